"""Signed evidence of every course completion (``training.evidence``).

Customers run mandatory training for audits: the proof that a learner completed a course
is the eduMe event that completed it, exactly as eduMe signed it. The ingress publishes
each event's JSON.stringify form (the bytes eduMe signs) with the signature it verified
(header ``edume-signature``); the learner agent writes, with the completion, one record per
learner and course: the completing event's bytes, id, signature, receipt time and place.
When an earlier-stamped completion arrives later and takes the course's completion over,
its record replaces the first (the topic is compacted by ``{userId}/{courseId}``).

``check`` verifies a record again with the secrets configured today.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from schemas.outputs import TrainingEvidence
from streams.core import topics
from streams.core.records import partition_for
from streams.core.state.common import Output, derived_id

Verdict = Literal["signed by eduMe", "authenticated by bearer token, not signed",
                  "signature does not verify"]
SIGNED: Verdict = "signed by eduMe"
BEARER: Verdict = "authenticated by bearer token, not signed"
FORGED: Verdict = "signature does not verify"


def evidence_key(user_id: int, course_id: int) -> str:
    return f"{user_id}/{course_id}"


def evidence_partition(user_id: int, partitions: int) -> int:
    """Where a learner's evidence goes: the partition of its userId (murmur2 of the decimal
    id, as the learner's events), so that one partition holds all of a learner's proofs
    and a reader looks at one partition, not the whole topic."""
    return partition_for(str(user_id).encode(), partitions)


def evidence_output(evidence: TrainingEvidence) -> Output:
    kind = topics.TRAINING_EVIDENCE
    return Output(kind, evidence_key(evidence.userId, evidence.courseId), evidence,
                  derived_id(evidence.eventId, kind, str(evidence.courseId)), kind,
                  partition_key=str(evidence.userId))


def check(evidence: TrainingEvidence, secrets: list[str]) -> Verdict:
    """Whether the completing event was signed by eduMe with one of ``secrets`` (today's
    ``EDUME_WEBHOOK_SECRETS``): its HMAC-SHA256 over the published bytes, compared in
    constant time with the signature the ingress verified."""
    if evidence.signature is None:
        return BEARER
    body = evidence.event.encode()
    signed = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        signed |= hmac.compare_digest(expected, evidence.signature)
    return SIGNED if signed else FORGED
