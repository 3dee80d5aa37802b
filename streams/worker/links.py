"""The links processor: ``links.requests`` and ``links.issue`` (co-partitioned, keyed by
externalUserId) into issue-link events, signed links and rejections, with the links table
keeping what each user was issued. Like the other processors it writes nothing itself: it
answers a ``Step`` the shell writes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.outputs import LinkIssue, LinkRequest
from streams.core import topics
from streams.core.clock import rfc3339
from streams.core.erasures import ErasureBook, links_after_erasure
from streams.core.records import InRecord, Layout, OutRecord, dead_letter, partition_for
from streams.core.state.common import short_id
from streams.core.state.links import (
    LinkState,
    decide_link,
    decode_links,
    encode_links,
    issue_for_request,
    issue_output,
    read_request,
    record_issued,
    rejection,
    request_id,
)
from streams.core.webhooks import reason_kind
from streams.worker.processing import Load, ReplicaView, Step, out_record

ReadRequest = LinkRequest | tuple[dict[str, Any], str]
"""What ``read_request`` answers: the request, or (what can be shown of it, why not)."""

CATALOG_GRACE_S = 10.0
"""How long a young course link waits for the catalog to show its course (see
``LinkProcessor.waiting_on_catalog``): a link is young while its age
(``record_age_ms``) is at most this, and its batch waits at most this long for it,
counted from when the batch began waiting."""
CATALOG_BUILD_WAIT_S = 120.0
"""How long a course link of any age waits while the worker's copy of the catalog is
behind the course topics (after a start with a backlog, say): requests older than the
grace would otherwise be refused for courses whose events are still to be read. Also the
hard limit of any batch's wait, counted from when it began."""


def record_age_ms(timestamp_ms: int, now_ms: int) -> int:
    """A record's age: ``now - min(timestamp, now)``. A record stamped in the future (a
    producer's clock ahead, or a timestamp set by hand) is as young as one stamped now,
    never younger: how long it waits is bounded by its batch's deadline, not by its
    timestamp."""
    return now_ms - min(timestamp_ms, now_ms)


class LinkProcessor:
    """``links.requests`` and ``links.issue`` (co-partitioned, keyed by externalUserId) into
    issue-link events, signed links and rejections, with the links table keeping what each
    user was issued and every request and issue id applied."""

    def __init__(self, layout: Layout, replica: ReplicaView, *, base_url: str,
                 secret: str) -> None:
        self.layout = layout
        self.replica = replica
        self.base_url = base_url
        self._secret = secret
        self.dlq = layout.name(topics.STREAMS_DLQ)
        self.issue_topic = layout.name(topics.LINK_ISSUE)
        self.rekey_topic = layout.name(topics.LINK_REKEY)
        self._partitions = layout.count(topics.LINK_REQUESTS)
        self._parsed: dict[tuple[str, int, int, bytes | None],
                           LinkIssue | ValidationError | ReadRequest] = {}

    def __repr__(self) -> str:  # the secret stays out of any trace
        return f"LinkProcessor(base_url={self.base_url!r})"

    def waiting_on_catalog(self, records: Sequence[InRecord], now_ms: int,
                           *, any_age: bool = False) -> bool:
        """Whether a course link of the batch, younger than ``CATALOG_GRACE_S``, would be
        rejected for what the catalog does not show yet (course unknown, not published,
        team not assigned). Course events and learner events travel on different topics:
        a learner assigned a course just created can come first, and every worker's copy
        of the catalog follows the course agent's changelog a moment behind. The shell
        waits (at most the grace, from when the batch began waiting) before deciding such
        a batch; a deletion is final and is not waited on. ``any_age``: whatever the
        records' age (the shell asks this while the worker's copy of the catalog is behind
        its topics)."""
        grace_ms = CATALOG_GRACE_S * 1000
        for record in records:
            if not any_age and record_age_ms(record.timestamp_ms, now_ms) > grace_ms:
                continue
            issue = self._peek_issue(record)
            if issue is None or issue.kind != "course":
                continue
            entry = self.replica.catalog.get(issue.courseId or issue.contentId or 0)
            if entry is None:
                return True
            if entry.is_deleted:
                continue
            if entry.is_published is not True:
                return True
            if issue.teamIds and not set(issue.teamIds) <= set(entry.team_ids):
                return True
        return False

    def process(self, records: Sequence[InRecord], load: Load) -> Step:
        step = Step()
        working: dict[str, LinkState] = {}
        changed: set[str] = set()

        erasures = self.replica.erasures

        def state_of(key: str) -> LinkState:
            state = working.get(key)
            if state is None:
                raw = load(key)
                state = decode_links(raw) if raw else LinkState(key)
                if erasures:
                    state = links_after_erasure(state, erasures)
                working[key] = state
            return state

        for index, record in enumerate(records):
            if erasures and self._erased(record, erasures):
                step.erased += 1
                continue
            since = len(step.outputs)
            if record.topic == self.issue_topic:
                key = self._issue(record, step, state_of)
            else:
                key = self._request(record, step, state_of)
            step.caused_by(index, since)
            if key is not None:
                changed.add(key)
                step.key_of[index] = key
        for key in changed:
            partition = partition_for(key.encode(), self._partitions)
            step.states[key] = (partition, encode_links(working[key]))
        self._parsed.clear()
        return step

    def _erased(self, record: InRecord, erasures: ErasureBook) -> bool:
        """Whether the record is of a learner erased after it was written: a request or an
        issue-link record of the external user (its key), or an issue-link record of the
        user it names."""
        stamped_us = record.timestamp_ms * 1000
        external = (record.key or b"").decode("utf-8", "replace")
        if erasures.erased_before(stamped_us, external_user_id=external):
            return True
        if record.topic == self.issue_topic:
            issue = self._parse(record)
            if isinstance(issue, LinkIssue) and issue.userId is not None:
                return erasures.erased_before(stamped_us, user_id=issue.userId)
        return False

    def _parse(self, record: InRecord) -> LinkIssue | ValidationError | ReadRequest:
        """A record of ``links.issue`` as an issue-link event (or why not), any other as a
        request (or why not); parsed once per batch, however often the shell asks whether
        the batch must wait (``process`` forgets the batch's parses)."""
        place = (record.topic, record.partition, record.offset, record.value)
        parsed = self._parsed.get(place)
        if parsed is None:
            if record.topic == self.issue_topic:
                try:
                    parsed = LinkIssue.model_validate_json(record.value or b"")
                except ValidationError as exc:
                    parsed = exc
            else:
                parsed = read_request(record.value)
            self._parsed[place] = parsed
        return parsed

    def _peek_issue(self, record: InRecord) -> LinkIssue | None:
        """The issue-link event a record is or asks for, if it is a usable one."""
        parsed = self._parse(record)
        if isinstance(parsed, LinkIssue):
            return parsed
        if isinstance(parsed, ValidationError | tuple):
            return None
        issue = issue_for_request(parsed, "0" * 64)
        return issue if isinstance(issue, LinkIssue) else None

    def _dead(self, record: InRecord, reason: str, step: Step) -> None:
        step.outputs.append(dead_letter(record, reason, self.dlq))
        step.dead[reason_kind(reason)] += 1

    def _misplaced(self, record: InRecord, key: str) -> int | None:
        """The partition ``key`` belongs on, when the record is not there under that key."""
        key_bytes = key.encode()
        expected = partition_for(key_bytes, self._partitions)
        if record.key == key_bytes and record.partition == expected:
            return None
        return expected

    def _request(
        self, record: InRecord, step: Step, state_of: Callable[[str], LinkState]
    ) -> str | None:
        rid = request_id(record.value, record.event_id())
        read = self._parse(record)
        assert not isinstance(read, LinkIssue | ValidationError)  # not the issue topic
        received_at = record.received_at()
        if isinstance(read, tuple):
            shown, reason = read
            key = (record.key or b"").decode("utf-8", "replace")
            step.outputs.append(
                out_record(self.layout, rejection(key, shown, reason, rid), received_at))
            self._dead(record, reason, step)
            return None
        ext = read.externalUserId
        expected = self._misplaced(record, ext)
        if expected is not None:
            if record.topic == self.rekey_topic:
                self._dead(record, "a key or partition the re-keying topic cannot hold", step)
            else:
                step.outputs.append(OutRecord(self.rekey_topic, expected, ext.encode(),
                                              record.value, list(record.headers)))
                step.rekeyed += 1
            return None
        state = state_of(ext)
        short = short_id(rid)
        if state.applied.seen(rid, short):
            step.repeats += 1
            return None
        state.applied.note(rid, short)
        issue = issue_for_request(read, rid)
        if isinstance(issue, str):
            shown_request = orjson.loads(record.value or b"{}")
            output = rejection(ext, shown_request, issue, rid)
            state.rejected += 1
            step.outputs.append(out_record(self.layout, output, received_at))
        else:
            # The issue-link event goes out, and is decided here at once: this agent owns
            # its key (same externalUserId, same partition), so the link need not wait for
            # the record's trip through links.issue. When the record comes back, its id is
            # in the state: a repeat, skipped.
            output = issue_output(issue, "request")
            step.outputs.append(out_record(self.layout, output, received_at))
            self._decide(issue, output.event_id, record.timestamp_ms, received_at, state, step,
                         note=read.reason)
        step.applied[topics.LINK_REQUESTS] += 1
        return ext

    def _issue(
        self, record: InRecord, step: Step, state_of: Callable[[str], LinkState]
    ) -> str | None:
        issue = self._parse(record)
        if isinstance(issue, ValidationError):
            self._dead(record, f"not an issue-link event: {_first_error(issue)}", step)
            return None
        assert isinstance(issue, LinkIssue)  # the issue topic's records parse as that
        ext = issue.externalUserId
        if self._misplaced(record, ext) is not None:
            self._dead(record, "an issue-link event under another key or partition than "
                       "murmur2 of its externalUserId", step)
            return None
        iid = record.event_id() or hashlib.sha256(record.value or b"").hexdigest()
        state = state_of(ext)
        short = short_id(iid)
        if state.applied.seen(iid, short):
            step.repeats += 1
            return None
        self._decide(issue, iid, record.timestamp_ms, record.received_at(), state, step,
                     short=short)
        return ext

    def _decide(self, issue: LinkIssue, iid: str, issued_at_ms: int, received_at: bytes,
                state: LinkState, step: Step, *, short: str = "",
                note: str | None = None) -> None:
        """Sign the link an issue-link event asks for (or reject it), once per its id
        (``short``: its short id, if known)."""
        state.applied.note(iid, short)
        if issue.userId is not None:
            state.user_id = issue.userId
        output = decide_link(issue, iid, self.replica.catalog, base_url=self.base_url,
                             secret=self._secret, issued_at=rfc3339(issued_at_ms),
                             note=note)
        record_issued(state, output, output.event_id)
        step.outputs.append(out_record(self.layout, output, received_at))
        step.applied[topics.LINK_ISSUE] += 1


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "value"
    return f"{where}: {error['msg']}"
