"""States as JSON bytes and back: the values of the tables' changelog topics.

The encoding is compact but readable (an operator can ``edume-streams read`` a changelog):
a register is ``[ts, eventId, value]`` (``[ts, eventId, value, rank]`` when the event's
rank among events of its timestamp is not 0), sets are sorted arrays, integer-keyed maps
have decimal-string keys. ``decode(encode(state)) == state`` for every state (tested).

Versions (``"v"``): 2 keeps what was applied as ``applied`` (a count) and ``recent`` (the
latest short ids, oldest first). Version 1 (no ``"v"``) kept every event id applied, in
``eventIds``; it still loads: its count is the number of ids, and any ``RECENT_IDS`` of
them are kept (their order was not recorded).
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.core.state.catalog import CourseEntry
from streams.core.state.common import Applied, Stamped, short_id
from streams.core.state.progress import CourseProgress, LearnerState

_OPTIONS = orjson.OPT_NON_STR_KEYS
VERSION = 2


def _one(r: Stamped) -> list[Any]:
    if r.rank:
        return [r.ts, r.event_id, r.value, r.rank]
    return [r.ts, r.event_id, r.value]


def _stamped(raw: list[Any]) -> Stamped:
    return Stamped(raw[0], raw[1], raw[2], raw[3] if len(raw) > 3 else 0)


def _reg(register: Stamped | None) -> list[Any] | None:
    return None if register is None else _one(register)


def _unreg(raw: list[Any] | None) -> Stamped | None:
    return None if raw is None else _stamped(raw)


def _regs(registers: dict[Any, Stamped]) -> dict[Any, list[Any]]:
    return {k: _one(r) for k, r in registers.items()}


def _int_regs(raw: dict[str, list[Any]]) -> dict[int, Stamped]:
    return {int(k): _stamped(r) for k, r in raw.items()}


def encode_applied(applied: Applied) -> dict[str, Any]:
    """The fields a state keeps of the events applied to it."""
    return {"v": VERSION, "applied": applied.count, "recent": applied.recent}


def decode_applied(raw: dict[str, Any], old_field: str = "eventIds") -> Applied:
    """What a state of any version kept of the events applied (``old_field``: where version
    1 kept every id)."""
    if raw.get("v", 1) >= 2:
        return Applied(raw["applied"], raw["recent"])
    ids = raw.get(old_field, ())
    return Applied(len(ids), [short_id(i) for i in ids])


def encode_course(entry: CourseEntry) -> bytes:
    return orjson.dumps(
        {
            "courseId": entry.course_id,
            "courseKey": _reg(entry.course_key),
            "groupId": _reg(entry.group_id),
            "moduleIds": _reg(entry.module_ids),
            "teamSnapshot": _reg(entry.team_snapshot),
            "teamChanges": _regs(entry.team_changes),
            "published": _reg(entry.published),
            "deleted": _reg(entry.deleted),
            "titleChanged": _reg(entry.title_changed),
            "lastEvent": _reg(entry.last_event),
            **encode_applied(entry.applied),
        },
        option=_OPTIONS,
    )


def decode_course(data: bytes) -> CourseEntry:
    raw = orjson.loads(data)
    return CourseEntry(
        course_id=raw["courseId"],
        course_key=_unreg(raw["courseKey"]),
        group_id=_unreg(raw["groupId"]),
        module_ids=_unreg(raw["moduleIds"]),
        team_snapshot=_unreg(raw["teamSnapshot"]),
        team_changes=_int_regs(raw["teamChanges"]),
        published=_unreg(raw["published"]),
        deleted=_unreg(raw["deleted"]),
        title_changed=_unreg(raw["titleChanged"]),
        last_event=_unreg(raw["lastEvent"]),
        applied=decode_applied(raw),
    )


def _course_progress(progress: CourseProgress) -> dict[str, Any]:
    return {
        "started": _reg(progress.started),
        "lessonsStarted": sorted(progress.lessons_started),
        "lessonsFinished": sorted(progress.lessons_finished),
        "assessmentsStarted": sorted(progress.assessments_started),
        "assessmentsFinished": sorted(progress.assessments_finished),
        "surveys": _regs(progress.surveys),
        "completed": _reg(progress.completed),
        "detail": _reg(progress.detail),
    }


def _uncourse_progress(raw: dict[str, Any]) -> CourseProgress:
    return CourseProgress(
        started=_unreg(raw["started"]),
        lessons_started=set(raw["lessonsStarted"]),
        lessons_finished=set(raw["lessonsFinished"]),
        assessments_started=set(raw["assessmentsStarted"]),
        assessments_finished=set(raw["assessmentsFinished"]),
        surveys=_int_regs(raw["surveys"]),
        completed=_unreg(raw["completed"]),
        detail=_unreg(raw["detail"]),
    )


def encode_learner(state: LearnerState) -> bytes:
    return orjson.dumps(
        {
            "userId": state.user_id,
            "externalId": _reg(state.external_id),
            "identifiers": _regs(state.identifiers),
            "groupId": _reg(state.group_id),
            "courseGroupId": _reg(state.course_group_id),
            "added": _reg(state.added),
            "activated": _reg(state.activated),
            "assigned": sorted(state.assigned),
            "courses": {c: _course_progress(p) for c, p in state.courses.items()},
            "surveys": _regs(state.surveys),
            "lastEvent": _reg(state.last_event),
            **encode_applied(state.applied),
            "emitted": sorted(state.emitted),
            "linked": sorted(state.linked),
            "reminders": {c: [due, cause] for c, (due, cause) in state.reminders.items()},
            "reminded": sorted(state.reminded),
        },
        option=_OPTIONS,
    )


def decode_learner(data: bytes) -> LearnerState:
    raw = orjson.loads(data)
    return LearnerState(
        user_id=raw["userId"],
        external_id=_unreg(raw["externalId"]),
        identifiers={k: _stamped(r) for k, r in raw["identifiers"].items()},
        group_id=_unreg(raw["groupId"]),
        course_group_id=_unreg(raw["courseGroupId"]),
        added=_unreg(raw["added"]),
        activated=_unreg(raw["activated"]),
        assigned=set(raw["assigned"]),
        courses={int(c): _uncourse_progress(p) for c, p in raw["courses"].items()},
        surveys=_int_regs(raw["surveys"]),
        last_event=_unreg(raw["lastEvent"]),
        applied=decode_applied(raw),
        emitted=set(raw["emitted"]),
        linked=set(raw.get("linked", ())),
        reminders={int(c): (r[0], r[1]) for c, r in raw.get("reminders", {}).items()},
        reminded=set(raw.get("reminded", ())),
    )


_REMINDERS = b'"reminders":'
_AFTER_REMINDERS = b',"reminded":'


def next_reminder_due(data: bytes) -> int | None:
    """When the earliest pending reminder of an encoded learner state is due, or None:
    what the worker's reminder index needs of a stored state, read without decoding the
    rest of it. ``encode_learner`` writes ``reminders`` last but one, an object of
    ``[due, cause]`` arrays (no brace inside), followed by ``reminded``; a key holding
    ``"reminders":`` elsewhere can only be an identifier's, earlier in the bytes, and a
    string holding it is escaped. Anything else (a state written by another version)
    is decoded whole."""
    at = data.rfind(_REMINDERS)
    start = at + len(_REMINDERS)
    end = data.find(b"}", start)
    if at < 0 or data[start:start + 1] != b"{" or not data.startswith(_AFTER_REMINDERS, end + 1):
        pending = orjson.loads(data).get("reminders") or {}
    else:
        pending = orjson.loads(data[start:end + 1])
    return min((due for due, _ in pending.values()), default=None)
