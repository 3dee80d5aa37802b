"""The pure core of the workers: reducers that fold events into state and decide outputs.

Nothing here imports Faust, Kafka clients or the ingress; every function is deterministic in
its arguments (no clock, no I/O), so the tests drive it directly, with hypothesis.
"""
