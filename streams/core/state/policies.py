"""Training policies: which courses are mandatory, and for which groups.

``training.policies`` is compacted and keyed by courseId; a null value removes a course's
policy. Every worker reads all of it (a few records per course), so the book answers for
any course. A course's records normally share one partition, where the offset orders
them; a writer with another partitioner can put a course's records on two partitions, so
records are ordered by their Kafka timestamp first, then partition and offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.outputs import TrainingPolicy
from streams.core.state.common import UnusableEvent

RecordVersion = tuple[int, int, int]
"""(Kafka timestamp in ms, partition, offset): the order of policy records."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A course's policy: mandatory for ``group_ids``, or for every group when None."""

    course_id: int
    mandatory: bool
    group_ids: frozenset[int] | None
    team_id: int | None = None
    """The team assignment and reminder links name (None: the course's only team)."""

    def applies_to(self, group_id: int | None) -> bool:
        """Whether the course is mandatory for a learner of ``group_id``."""
        if not self.mandatory:
            return False
        if self.group_ids is None:
            return True
        return group_id is not None and group_id in self.group_ids

    def value(self) -> TrainingPolicy:
        groups = None if self.group_ids is None else sorted(self.group_ids)
        return TrainingPolicy(courseId=self.course_id, mandatory=self.mandatory,
                              groupIds=groups, teamId=self.team_id)


def parse_policy_record(key: bytes | None, value: bytes | None) -> tuple[int, Policy | None]:
    """A ``training.policies`` record as ``(courseId, policy or None for a tombstone)``.

    Raises ``UnusableEvent`` for a record no policy can be read from: a key that is not a
    decimal courseId, a value that is not a policy, or one whose courseId is not its key.
    """
    text = (key or b"").decode("ascii", errors="replace")
    if not text.isdigit() or not text.isascii():
        raise UnusableEvent("the key is not a courseId (a decimal string)")
    try:
        course_id = int(text)
    except ValueError:  # more digits than int() converts (4,300 by default)
        raise UnusableEvent("the key is not a courseId (a decimal string)") from None
    if value is None:
        return course_id, None
    try:
        policy = TrainingPolicy.model_validate_json(value)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "(root)" for e in errors[:3])
        raise UnusableEvent(f"the value is not a training policy ({where})") from None
    if policy.courseId != course_id:
        raise UnusableEvent(f"the value's courseId {policy.courseId} is not the key {course_id}")
    groups = None if policy.groupIds is None else frozenset(policy.groupIds)
    return course_id, Policy(course_id, policy.mandatory, groups, policy.teamId)


class PolicyBook:
    """The latest policy of every course, from the records of ``training.policies``."""

    __slots__ = ("_latest",)

    def __init__(self) -> None:
        self._latest: dict[int, tuple[RecordVersion, Policy | None]] = {}

    def apply(self, course_id: int, policy: Policy | None, version: RecordVersion) -> bool:
        """Take a record; False when a later record of the course is already known."""
        known = self._latest.get(course_id)
        if known is not None and known[0] >= version:
            return False
        self._latest[course_id] = (version, policy)
        return True

    def version(self, course_id: int) -> RecordVersion | None:
        """Where the course's latest record is (timestamp, partition, offset), if any."""
        known = self._latest.get(course_id)
        return None if known is None else known[0]

    def get(self, course_id: int) -> Policy | None:
        known = self._latest.get(course_id)
        return None if known is None else known[1]

    def mandatory_for(self, course_id: int, group_id: int | None) -> bool:
        policy = self.get(course_id)
        return policy is not None and policy.applies_to(group_id)

    def mandatory_among(self, course_ids: Iterable[int], group_id: int | None) -> set[int]:
        """The courses of ``course_ids`` that are mandatory for ``group_id``."""
        return {c for c in course_ids if self.mandatory_for(c, group_id)}

    def policies(self) -> list[Policy]:
        """Every course's current policy (tombstoned courses left out), by courseId."""
        return [p for _, (_, p) in sorted(self._latest.items()) if p is not None]

    def __len__(self) -> int:
        return sum(1 for _, p in self._latest.values() if p is not None)
