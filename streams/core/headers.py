"""The Kafka record headers this project writes, named once for every producer."""

from __future__ import annotations

from typing import Final

Headers = list[tuple[str, str | bytes | None]]
"""A record's headers as the producers take them: (name, value) pairs, in order."""

EVENT_ID: Final = "edume-event-id"
"""Lowercase hex SHA-256: of the webhook's JSON.stringify form, or derived from a record's
cause for what a worker produces; consumers drop repeats by it."""

EVENT_TYPE: Final = "edume-event-type"
"""The canonical event type (absent on a DLQ record whose type is unknown)."""

RECEIVED_AT: Final = "edume-received-at"
"""When the ingress received the webhook, RFC 3339 UTC with milliseconds."""

SIGNATURE: Final = "edume-signature"
"""Events the ingress verified by their signature: the verified HMAC-SHA256, lowercase hex
(absent for an event authenticated by a bearer token)."""

DLQ_REASON: Final = "edume-dlq-reason"
"""Dead-letter records only: why the record is there."""

DLQ_SOURCE: Final = "edume-dlq-source"
"""``streams.dlq`` records only: the record a worker could not use, as
``topic/partition/offset``."""
