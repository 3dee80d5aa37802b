"""``edume-streams evidence``: a learner's course completions with their proof.

The proofs are on ``training.evidence`` (compacted), one record per learner and course,
all of a learner's in the partition of its userId (``evidence_partition``): the reader
looks at that partition only, from its beginning, and keeps the latest record per course
(a tombstone, written when the learner is erased, removes it). Each proof is checked again
with the webhook secrets configured today (``streams.core.evidence.check``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from schemas.outputs import TrainingEvidence
from streams.core.evidence import Verdict, check

CSV_COLUMNS = ("userId", "courseId", "completedAt", "verdict", "eventId", "signature",
               "receivedAt", "topic", "partition", "offset", "event")


@dataclass(frozen=True)
class Proof:
    """A completion's evidence and what checking it today says."""

    evidence: TrainingEvidence
    verdict: Verdict

    def row(self) -> dict[str, object]:
        e = self.evidence
        return {"userId": e.userId, "courseId": e.courseId, "completedAt": e.completedAt,
                "verdict": self.verdict, "eventId": e.eventId, "signature": e.signature or "",
                "receivedAt": e.receivedAt or "", "topic": e.topic, "partition": e.partition,
                "offset": e.offset, "event": e.event}

    def line(self) -> str:
        e = self.evidence
        return (f"course {e.courseId} completed at {e.completedAt}: {self.verdict} (event "
                f"{e.eventId} at {e.topic}/{e.partition}/{e.offset}, received "
                f"{e.receivedAt or 'at an unknown time'})")


def proofs(found: Iterable[TrainingEvidence], secrets: list[str]) -> list[Proof]:
    return [Proof(e, check(e, secrets)) for e in found]


def write_csv(out: IO[str], found: Iterable[Proof]) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for proof in found:
        writer.writerow(proof.row())
