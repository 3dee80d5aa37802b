"""The course catalog: one entry per course, folded from ``edume.course.events``.

Every course event carries the whole course (group, teams, courseKey, modules), so most
fields are registers of the latest event. Teams are the exception, read as eduMe's
document describes them:

- ``course.updated`` / ``team.assigned`` lists the teams just assigned: they are added;
- ``course.updated`` / ``team.removed`` lists the teams just removed: they are removed;
- every other course event lists the course's teams at that moment: a snapshot.

Folding those in timestamp order, a team's membership is decided by the latest event that
speaks of it: the latest snapshot, unless an assignment or removal of that team is newer.
The entry therefore keeps the latest snapshot and, per team, the latest change newer than
it; anything older can no longer matter and is dropped.

``published``: ``course.published`` sets it, ``course.unpublished`` and ``course.added`` (a
new course is a draft until published) clear it; ``None`` until one of them is seen.
``deleted`` is final: no event undoes a deletion, and a deleted course keeps its entry.

Events of one timestamp are ordered by their meaning (``RANK``): added, updated, published,
unpublished, deleted. eduMe's samples stamp a course's events with the same millisecond:
a course added and published in it ends published.

Imports (``catalog.imports``, from ``edume-streams catalog import``) describe courses that
existed before the webhooks, which eduMe will not speak of until someone edits them. An
import is folded as a course event stamped ``importedAt`` that carries the whole course
(``apply_course_import``): its teams are a snapshot, it sets ``published`` either way, and
a deletion it reports is final like any other; a courseKey or module list it does not know
(null) is left as the events say. So an eduMe event stamped after the import wins, and one
stamped before loses, whatever order they arrive in. At the same instant the import comes
first (``IMPORT_RANK``): an eduMe event says what changed, while an import is someone's
reading of an export, which may or may not have seen that change yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import CourseAdded, CourseDeleted, CoursePublished, CourseUnpublished, CourseUpdated
from schemas.course import TeamAssignedPayload, TeamRemovedPayload, TitleChangedPayload
from schemas.outputs import CatalogImport
from streams.core.state.common import (
    Applied,
    Meta,
    Stamped,
    earlier,
    earliest,
    is_newer,
    later,
    latest,
    stamp,
)

CourseEvent = CourseAdded | CourseDeleted | CoursePublished | CourseUnpublished | CourseUpdated

RANK: dict[type[Any], int] = {
    CourseAdded: 0,
    CourseUpdated: 1,
    CoursePublished: 2,
    CourseUnpublished: 3,
    CourseDeleted: 4,
}
"""The order of a course's events of one timestamp: the order of a course's life."""

IMPORT_RANK = -1
"""An import's place among a course's events of its timestamp: before every eduMe event."""

_PUBLISHED_BY_TYPE: dict[type[Any], bool] = {
    CourseAdded: False,
    CoursePublished: True,
    CourseUnpublished: False,
}


@dataclass(slots=True)
class CourseEntry:
    """One course as its events describe it."""

    course_id: int
    course_key: Stamped | None = None
    group_id: Stamped | None = None
    module_ids: Stamped | None = None
    team_snapshot: Stamped | None = None
    """The latest event that listed all the course's teams (value: sorted team ids)."""
    team_changes: dict[int, Stamped] = field(default_factory=dict)
    """Per team, the latest assignment (True) or removal (False) newer than the snapshot."""
    published: Stamped | None = None
    deleted: Stamped | None = None
    """The earliest deletion (value: its timestamp as sent), or None."""
    title_changed: Stamped | None = None
    """The latest title change (value: its timestamp as sent)."""
    last_event: Stamped | None = None
    """The latest event applied (value: its timestamp as sent)."""
    applied: Applied = field(default_factory=Applied)

    @property
    def team_ids(self) -> list[int]:
        """The teams the course is assigned to now."""
        teams = set(self.team_snapshot.value) if self.team_snapshot else set()
        for team, change in self.team_changes.items():
            if change.value:
                teams.add(team)
            else:
                teams.discard(team)
        return sorted(teams)

    @property
    def is_deleted(self) -> bool:
        return self.deleted is not None

    @property
    def is_published(self) -> bool | None:
        return None if self.published is None else bool(self.published.value)

    def view(self) -> dict[str, Any]:
        """The entry as the query API answers it."""
        return {
            "courseId": self.course_id,
            "courseKey": _value(self.course_key),
            "groupId": _value(self.group_id),
            "teamIds": self.team_ids,
            "moduleIds": _value(self.module_ids) or [],
            "published": self.is_published,
            "deleted": self.is_deleted,
            "deletedAt": _value(self.deleted),
            "titleChangedAt": _value(self.title_changed),
            "lastEventAt": _value(self.last_event),
            "eventsApplied": self.applied.count,
        }


def _value(register: Stamped | None) -> Any:
    return None if register is None else register.value


def apply_course_event(entry: CourseEntry, event: CourseEvent, meta: Meta) -> bool:
    """Fold one course event into ``entry``; False (and nothing changes) for a repeat."""
    if entry.applied.seen(meta.event_id, meta.short):
        return False
    meta = meta.versioned(RANK[type(event)])
    entry.applied.note(meta.event_id, meta.short)
    payload = event.payload
    _whole_course(entry, meta, payload.course.courseKey, payload.group.groupId,
                  [m.moduleId for m in payload.modules])
    teams = {t.teamId for t in payload.teams}
    if isinstance(payload, TeamAssignedPayload | TeamRemovedPayload):
        assigned = isinstance(payload, TeamAssignedPayload)
        for team in teams:
            _change_team(entry, team, stamp(meta, assigned))
    else:
        _snapshot_teams(entry, stamp(meta, sorted(teams)))
    if isinstance(payload, TitleChangedPayload):
        entry.title_changed = later(entry.title_changed, stamp(meta, meta.timestamp))
    published = _PUBLISHED_BY_TYPE.get(type(event))
    if published is not None:
        entry.published = later(entry.published, stamp(meta, published))
    if isinstance(event, CourseDeleted):
        entry.deleted = earlier(entry.deleted, stamp(meta, meta.timestamp))
    return True


def apply_course_import(entry: CourseEntry, course: CatalogImport, meta: Meta) -> bool:
    """Fold one import (``meta``: its id, and ``importedAt`` as its time) into ``entry`` as a
    course event of that time listing all the course's teams; False (and nothing changes)
    for a repeat."""
    if entry.applied.seen(meta.event_id, meta.short):
        return False
    meta = meta.versioned(IMPORT_RANK)
    entry.applied.note(meta.event_id, meta.short)
    modules = None if course.moduleIds is None else list(course.moduleIds)
    _whole_course(entry, meta, course.courseKey, course.groupId, modules)
    _snapshot_teams(entry, stamp(meta, sorted(set(course.teamIds))))
    entry.published = later(entry.published, stamp(meta, course.published))
    if course.deleted:
        entry.deleted = earlier(entry.deleted, stamp(meta, meta.timestamp))
    return True


def _whole_course(entry: CourseEntry, meta: Meta, course_key: str | None, group_id: int,
                  module_ids: list[int] | None) -> None:
    """The registers every course event and every import sets (an import may not know the
    course's key or modules: None leaves them as they are)."""
    if course_key is not None:
        entry.course_key = later(entry.course_key, stamp(meta, course_key))
    entry.group_id = later(entry.group_id, stamp(meta, group_id))
    if module_ids is not None:
        entry.module_ids = later(entry.module_ids, stamp(meta, module_ids))
    entry.last_event = later(entry.last_event, stamp(meta, meta.timestamp))


def _change_team(entry: CourseEntry, team: int, change: Stamped) -> None:
    if not is_newer(change, entry.team_snapshot):
        return  # a newer snapshot already says whether this team is assigned
    entry.team_changes[team] = later(entry.team_changes.get(team), change)


def _snapshot_teams(entry: CourseEntry, snapshot: Stamped) -> None:
    if not is_newer(snapshot, entry.team_snapshot):
        return
    entry.team_snapshot = snapshot
    entry.team_changes = {
        team: change for team, change in entry.team_changes.items() if is_newer(change, snapshot)
    }


def merge_courses(a: CourseEntry, b: CourseEntry) -> CourseEntry:
    """The entry of both entries' events together: each register the latest (or earliest)
    of the two, the newer team snapshot with the changes of either newer than it."""
    snapshot = latest(a.team_snapshot, b.team_snapshot)
    changes: dict[int, Stamped] = {}
    for side in (a.team_changes, b.team_changes):
        for team, change in side.items():
            if is_newer(change, snapshot):
                changes[team] = later(changes.get(team), change)
    return CourseEntry(
        course_id=a.course_id,
        course_key=latest(a.course_key, b.course_key),
        group_id=latest(a.group_id, b.group_id),
        module_ids=latest(a.module_ids, b.module_ids),
        team_snapshot=snapshot,
        team_changes=changes,
        published=latest(a.published, b.published),
        deleted=earliest(a.deleted, b.deleted),
        title_changed=latest(a.title_changed, b.title_changed),
        last_event=latest(a.last_event, b.last_event),
        applied=a.applied.merged(b.applied),
    )


class CatalogView(Protocol):
    """Where the learner and link rules look courses up (every worker holds the whole
    catalog)."""

    def get(self, course_id: int) -> CourseEntry | None: ...
