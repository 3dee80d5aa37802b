"""The learner-event workloads of the worker benchmark's onboarding and long-history phases,
as (key, value) pairs in the order the ingress would write them, and the figures the
benchmark reads off a run's samples.

Each event is the webhook as the ingress publishes it (compact JSON); every value is
distinct, so every event id (the SHA-256 of the value, as ``preload`` heads them) is too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ONBOARDING_COURSES = list(range(7001, 7041))
"""The 40 courses of the onboarding customer: no course event names any of them, so the
catalog knows none."""
ONBOARDING_MANDATORY = ONBOARDING_COURSES[:20]
"""Half of them mandatory (for every group)."""
ONBOARDING_GROUP = 5
HISTORY_COURSES = [8001, 8002, 8003]
HISTORY_LESSONS = 10
"""Lessons per course in the long history: what the learner's state holds is bounded."""


def stamp(ms: int) -> str:
    """An epoch time in milliseconds as eduMe writes timestamps."""
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _user(user: int) -> dict[str, Any]:
    return {"eId": f"{user:08x}-ob00-45a5-8310-5ed1d0948e30", "userId": user,
            "identifiers": [{"id": user, "key": "hr.employeeId", "value": f"E{user}",
                             "createdAt": "2022-02-24T13:11:48.642Z"}]}


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _added(user: int, ms: int, courses: Sequence[int]) -> bytes:
    return _encode({"type": "learner.added", "timestamp": stamp(ms), "payload": {
        "user": _user(user), "group": {"groupId": ONBOARDING_GROUP},
        "courses": [{"courseId": c} for c in courses], "version": 1}})


def _activity(user: int, ms: int, kind: str, course: int, lesson: int | None) -> bytes:
    """``learner.activity.started`` / ``finished`` (``kind``) of a lesson, or of the
    course itself when ``lesson`` is None."""
    payload: dict[str, Any] = {"type": "course" if lesson is None else "lesson",
                               "user": _user(user), "group": {"groupId": ONBOARDING_GROUP},
                               "course": {"courseId": course}, "version": 1}
    if lesson is not None:
        payload |= {"module": {"moduleId": course * 10}, "lesson": {"lessonId": lesson}}
    return _encode({"type": f"learner.activity.{kind}", "timestamp": stamp(ms),
                    "payload": payload})


@dataclass(frozen=True)
class Onboarding:
    """A customer's first day as learner events, and what the worker should make of it."""

    events: list[tuple[bytes, bytes]]
    learners: int
    progress: int
    assignment_links: int
    """Links the worker asks for: one per learner and mandatory course assigned."""


def onboarding(learners: int, progress: int, start_ms: int, seed: int = 16) -> Onboarding:
    """``learners`` learner.added events (group 5, each assigned 3 of the 40 courses), then
    ``progress`` events of learners picked at random in one of their courses: lesson
    started, lesson finished, another lesson started, course finished (a quarter of them
    complete a course, half of those a mandatory one). Stamped from ``start_ms`` on, a
    millisecond apart."""
    rng = random.Random(seed)
    first = 2_000_000
    assigned = [rng.sample(ONBOARDING_COURSES, 3) for _ in range(learners)]
    mandatory = set(ONBOARDING_MANDATORY)
    events = [(str(first + i).encode(), _added(first + i, start_ms + i, courses))
              for i, courses in enumerate(assigned)]
    for j in range(progress):
        i = rng.randrange(learners)
        course = rng.choice(assigned[i])
        ms = start_ms + learners + j
        step = j % 4
        if step == 3:
            value = _activity(first + i, ms, "finished", course, None)
        else:
            lesson = course * 100 + (j // 4 + step // 2) % 20
            value = _activity(first + i, ms, "finished" if step == 1 else "started",
                              course, lesson)
        events.append((str(first + i).encode(), value))
    links = sum(len(mandatory.intersection(courses)) for courses in assigned)
    return Onboarding(events, learners, progress, links)


def long_history(events: int, learners: int, start_ms: int) -> list[tuple[bytes, bytes]]:
    """``events`` events of ``learners`` learners (round robin): each added once, then
    lesson starts and finishes over 3 courses of 10 lessons each, again and again, a
    millisecond apart. What a state holds stops growing after the first 60 events per
    learner; only the history does."""
    out = []
    for n in range(events):
        user = 5_000_000 + n % learners
        m = n // learners
        ms = start_ms + n
        if m == 0:
            value = _added(user, ms, HISTORY_COURSES)
        else:
            course = HISTORY_COURSES[(m // 2) % len(HISTORY_COURSES)]
            lesson = course * 100 + (m // 6) % HISTORY_LESSONS
            value = _activity(user, ms, "started" if m % 2 else "finished", course, lesson)
        out.append((str(user).encode(), value))
    return out


Sample = tuple[float, float, float]
"""(seconds since the first event, worker CPU seconds since then, events done)."""


def tenths(series: Sequence[Sample], events: float) -> tuple[Sample, Sample]:
    """The worker's (seconds, CPU seconds, events) over the first and over the last tenth
    of ``events``, as closely as the samples bracket them: from the first sample to the
    first one past a tenth, and from the last one short of nine tenths to the end."""
    head = next((s for s in series if s[2] >= events / 10), series[-1])
    start = series[0]
    tail_from = next((s for s in reversed(series) if s[2] <= events * 0.9), series[0])
    end = series[-1]

    def span(a: Sample, b: Sample) -> Sample:
        return (b[0] - a[0], b[1] - a[1], b[2] - a[2])

    return span(start, head), span(tail_from, end)
