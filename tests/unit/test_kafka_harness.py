"""The Apache Kafka test harness: pure parts that every cluster start relies on."""

from __future__ import annotations

import base64
import uuid

from tests.apache_kafka import _cluster_id


def test_cluster_ids_are_never_read_as_options() -> None:
    # One URL-safe base64 uuid in 64 starts with "-": the storage tool then fails with
    # "argument --cluster-id/-t: expected one argument". 5,000 draws miss that with
    # probability (63/64)**5000, below 1e-34, if the harness does not exclude it.
    ids = [_cluster_id() for _ in range(5000)]
    assert not [text for text in ids if text.startswith("-")]
    for text in ids[:50]:
        assert len(text) == 22
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
    assert len(set(ids)) == len(ids)


def test_a_cluster_id_is_a_uuid() -> None:
    raw = base64.urlsafe_b64decode(_cluster_id() + "==")
    assert uuid.UUID(bytes=raw)
