"""The stream-processing worker: a Faust app whose agents fold eduMe events into tables.

Layering: ``processing`` and ``records`` import no Faust (the processors are driven by tests
directly); only ``app`` and the modules it wires know Faust. Nothing here imports the ingress.
"""
