"""Signed evidence of every course completion, without a broker: checking a proof again
with today's secrets, and how the command shows it."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io

import pytest

from schemas.outputs import TrainingEvidence
from streams.core import topics
from streams.core.evidence import (
    BEARER,
    FORGED,
    SIGNED,
    check,
    evidence_key,
    evidence_output,
    evidence_partition,
)
from streams.core.records import partition_for
from streams.tools.evidence import CSV_COLUMNS, proofs, write_csv

EVENT = ('{"type":"learner.activity.finished","timestamp":"2026-11-02T10:00:00.000Z",'
         '"payload":{"type":"course","user":{"eId":"ext-7","userId":7},"group":{"groupId":5},'
         '"course":{"courseId":8001},"version":1}}')


def proof(signature: str | None, event: str = EVENT) -> TrainingEvidence:
    return TrainingEvidence(userId=7, courseId=8001, completedAt="2026-11-02T10:00:00.000Z",
                            eventId=hashlib.sha256(event.encode()).hexdigest(), event=event,
                            signature=signature, receivedAt="2026-11-02T10:00:01.000Z",
                            topic="edume.learner.events", partition=3, offset=42)


def sign(secret: str, text: str = EVENT) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_a_proof_signed_with_a_secret_of_today_verifies() -> None:
    assert check(proof(sign("old")), ["new", "old"]) == SIGNED  # rotation: either verifies
    assert check(proof(sign("old")), ["new"]) == FORGED  # the secret is gone
    assert check(proof(None), ["new"]) == BEARER
    assert check(proof(sign("s")), []) == FORGED


def test_a_changed_byte_does_not_verify() -> None:
    signed = sign("s")
    tampered = EVENT.replace('"groupId":5', '"groupId":6')
    assert check(proof(signed, tampered), ["s"]) == FORGED


def test_a_signature_must_be_lowercase_hex() -> None:
    with pytest.raises(ValueError):
        proof(sign("s").upper())


def test_a_learners_proofs_share_one_partition() -> None:
    assert evidence_key(7, 8001) == "7/8001"
    assert evidence_partition(7, 8) == partition_for(b"7", 8)
    out = evidence_output(proof(None))
    assert out.topic == topics.TRAINING_EVIDENCE and out.key == "7/8001"
    assert out.event_id != proof(None).eventId  # derived from the completing event


def test_the_command_prints_and_writes_each_proof() -> None:
    checked = proofs([proof(sign("s")), proof(None)], ["s"])
    assert [p.verdict for p in checked] == [SIGNED, BEARER]
    assert checked[0].line() == (
        f"course 8001 completed at 2026-11-02T10:00:00.000Z: signed by eduMe (event "
        f"{proof(None).eventId} at edume.learner.events/3/42, received "
        "2026-11-02T10:00:01.000Z)")
    out = io.StringIO()
    write_csv(out, checked)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["event"] == EVENT and rows[0]["verdict"] == SIGNED
    assert rows[1]["signature"] == "" and rows[1]["verdict"] == BEARER
