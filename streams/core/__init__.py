"""The pure core: the rules of events, states, links and records, shared by both
processes and the operator tools. Nothing here reads or writes a topic or the network
(``tests/unit/test_layering.py``)."""
