"""Erasing a learner, without a broker: the records of ``privacy.erasures``, the book every
worker keeps of them, and what the processors do with events and states of erased
learners."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.workloads import _activity, _added
from streams.core import topics
from streams.core.erasures import (
    EXTERNAL,
    USER,
    Erasure,
    ErasureBook,
    erasure_of,
    learner_predates,
    links_after_erasure,
    parse_erasure_record,
)
from streams.core.state.codec import decode_learner
from streams.core.state.common import UnusableEvent, parse_timestamp
from streams.core.state.links import LinkState
from streams.core.state.progress import LearnerState
from tests.unit.test_worker_processing import (
    LAYOUT,
    Replica,
    Store,
    link_processor,
    link_request,
    record,
)

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_an_erasure_is_a_record_of_the_contract() -> None:
    erasure = erasure_of(USER, "0042", T0_MS)
    assert erasure.key == b"user/42"
    assert orjson.loads(erasure.value()) == {"userId": 42,
                                             "requestedAt": "2026-01-01T00:00:00.000Z"}
    external = erasure_of(EXTERNAL, "ana@example.com", T0_MS + 5)
    assert external.key == b"external/ana@example.com"
    assert orjson.loads(external.value()) == {"externalUserId": "ana@example.com",
                                              "requestedAt": "2026-01-01T00:00:00.005Z"}
    for erased in (erasure, external):
        assert parse_erasure_record(erased.key, erased.value()) == erased


@pytest.mark.parametrize("kind, subject", [
    (USER, "0"), (USER, "-1"), (USER, str(2**53)), (USER, "1.5"), (USER, "\u0661"),
    (EXTERNAL, ""), (EXTERNAL, "x" * 257),
])
def test_forget_refuses_a_subject_no_learner_has(kind: str, subject: str) -> None:
    with pytest.raises(ValueError):
        erasure_of(kind, subject, T0_MS)  # type: ignore[arg-type]


@pytest.mark.parametrize("key, value, reason", [
    (b"42", b'{"userId":42,"requestedAt":"2026-01-01T00:00:00Z"}', "neither user/"),
    (b"user/", b'{"userId":42,"requestedAt":"2026-01-01T00:00:00Z"}', "neither user/"),
    (b"user/42", b'{"userId":43,"requestedAt":"2026-01-01T00:00:00Z"}', "not its key"),
    (b"user/42", b'{"externalUserId":"42","requestedAt":"2026-01-01T00:00:00Z"}', "not its key"),
    (b"user/42", b'{"userId":42}', "not an erasure"),
    (b"user/42", b'{"userId":42,"externalUserId":"a","requestedAt":"2026-01-01T00:00:00Z"}',
     "not an erasure"),
    (b"user/42", b'{"userId":42,"requestedAt":"yesterday"}', "not an RFC 3339 time"),
])
def test_an_unusable_erasure_record_says_why(key: bytes, value: bytes, reason: str) -> None:
    with pytest.raises(UnusableEvent, match=reason):
        parse_erasure_record(key, value)


def test_a_tombstone_erases_nothing_and_withdraws_nothing() -> None:
    assert parse_erasure_record(b"user/42", None) is None


def test_the_book_keeps_the_latest_request_per_learner() -> None:
    book = ErasureBook()
    assert not book
    assert book.apply(Erasure(USER, "42", 2_000))
    assert not book.apply(Erasure(USER, "42", 1_000))  # older: nothing new
    assert not book.apply(Erasure(USER, "42", 2_000))
    assert book.apply(Erasure(USER, "42", 3_000))
    assert book.apply(Erasure(EXTERNAL, "42", 1_000))  # another name space
    assert (book.user(42), book.external("42"), book.user(43)) == (3_000, 1_000, None)
    assert book.erased_before(2_999, user_id=42)
    assert not book.erased_before(3_000, user_id=42)
    assert book.erased_before(999, external_user_id="42")
    assert not book.erased_before(999, user_id=43, external_user_id="43")
    assert len(book) == 2 and [e.key for e in book.erasures()] == [b"user/42", b"external/42"]


@given(st.lists(st.tuples(st.sampled_from([USER, EXTERNAL]), st.integers(1, 5),
                          st.integers(0, 10**6)), max_size=30))
def test_the_book_is_the_same_whatever_the_order(requests: list[tuple[str, int, int]]) -> None:
    forward, backward = ErasureBook(), ErasureBook()
    erasures = [Erasure(kind, str(n), t) for kind, n, t in requests]  # type: ignore[arg-type]
    for erasure in erasures:
        forward.apply(erasure)
    for erasure in reversed(erasures):
        backward.apply(erasure)
    assert forward.erasures() == backward.erasures()
    for erasure in erasures:
        since = (forward.user(int(erasure.subject)) if erasure.kind == USER
                 else forward.external(erasure.subject))
        assert since is not None and since >= erasure.requested_at_us


# ------------------------------------------------------------------ the learner processor

def learner_records(user: int, start_ms: int, count: int) -> list[bytes]:
    """A learner added at ``start_ms``, then ``count - 1`` lesson events a second apart."""
    out = [_added(user, start_ms, [7001])]
    for n in range(1, count):
        kind = "started" if n % 2 else "finished"
        out.append(_activity(user, start_ms + n * 1000, kind, 7001, n))
    return out


def apply_all(values: list[bytes], replica: Replica, store: Store, user: int
              ) -> tuple[int, int]:
    from streams.worker.processing import LearnerProcessor

    processor = LearnerProcessor(LAYOUT, replica)
    recs = [record(v, str(user), topics.LEARNER_EVENTS, offset=i) for i, v in enumerate(values)]
    step = processor.process(recs, store.load)
    for key, (_partition, value) in step.states.items():
        store[key] = value
    return sum(step.applied.values()), step.erased


def test_events_stamped_before_the_erasure_are_ignored_and_later_ones_build_a_new_state() -> None:
    replica, store = Replica(), Store()
    before = learner_records(42, T0_MS, 4)
    replica.erasures.apply(erasure_of(USER, "42", T0_MS + 10_000))
    assert apply_all(before, replica, store, 42) == (0, 4)  # a redelivery, a replay...
    assert "42" not in store
    after = learner_records(42, T0_MS + 20_000, 2)
    assert apply_all(after, replica, store, 42) == (2, 0)  # the learner came back
    state = decode_learner(store["42"])
    assert state.last_event is not None and state.last_event.ts >= (T0_MS + 20_000) * 1000


def test_events_of_an_erased_external_user_id_are_ignored_under_any_user_id() -> None:
    replica, store = Replica(), Store()
    external = "0000002b-ob00-45a5-8310-5ed1d0948e30"  # the eId the events carry
    replica.erasures.apply(erasure_of(EXTERNAL, external, T0_MS + 10_000))
    before = learner_records(43, T0_MS, 2)
    assert external.encode() in before[0]
    assert apply_all(before, replica, store, 43) == (0, 2)


def test_a_state_the_erasure_has_not_reached_starts_again() -> None:
    replica, store = Replica(), Store()
    assert apply_all(learner_records(44, T0_MS, 3), replica, store, 44) == (3, 0)
    old = decode_learner(store["44"])
    assert old.courses[7001].lessons_started == {1}
    # The erasure arrives while no worker owned the learner; then a later event comes.
    replica.erasures.apply(erasure_of(USER, "44", T0_MS + 10_000))
    assert learner_predates(old, replica.erasures)
    later = [_activity(44, T0_MS + 20_000, "started", 7001, 9)]
    assert apply_all(later, replica, store, 44) == (1, 0)
    state = decode_learner(store["44"])
    assert state.courses[7001].lessons_started == {9}  # nothing of before is kept
    assert state.external_user_id == old.external_user_id  # the event names it again
    assert not learner_predates(state, replica.erasures)


def test_a_state_never_seen_predates_nothing() -> None:
    book = ErasureBook()
    book.apply(Erasure(USER, "1", 10))
    assert not learner_predates(LearnerState(1), book)


# ------------------------------------------------------------------ the links processor

def test_link_requests_written_before_the_erasure_are_ignored() -> None:
    replica, store = Replica(), Store()
    proc = link_processor(replica)
    value = link_request("ana", kind="hub", teamIds=[3])
    old = record(value, "ana", topics.LINK_REQUESTS)  # written at 1_700_000_000_000
    replica.erasures.apply(Erasure(EXTERNAL, "ana", 1_700_000_000_001 * 1000))
    step = proc.process([old], store.load)
    assert (step.erased, step.outputs, step.states) == (1, [], {})
    later = old._replace(timestamp_ms=1_700_000_000_002, offset=1)
    step = proc.process([later], store.load)
    assert step.erased == 0 and [o.topic for o in step.outputs] == [
        LAYOUT.name(topics.LINK_ISSUE), LAYOUT.name(topics.LINK_ISSUED)]


def test_links_issued_before_the_erasure_go_and_later_ones_stay() -> None:
    book = ErasureBook()
    links = [{"issuedAt": "2026-01-01T00:00:00.000Z", "url": "old"},
             {"issuedAt": "2026-01-01T00:00:20.000Z", "url": "new"},
             {"issuedAt": "not a time", "url": "odd"}]
    state = LinkState("ana", 42, links=links)
    assert links_after_erasure(state, book) is state
    book.apply(Erasure(USER, "42", parse_timestamp("2026-01-01T00:00:10Z")))
    left = links_after_erasure(state, book)
    assert [link["url"] for link in left.links] == ["new"] and left.user_id == 42
    book.apply(Erasure(EXTERNAL, "ana", parse_timestamp("2026-01-01T00:00:30Z")))
    gone = links_after_erasure(state, book)
    assert gone.links == [] and gone.user_id is None


def test_the_erasure_topic_is_in_the_catalog_compacted() -> None:
    spec = topics.BY_NAME[topics.PRIVACY_ERASURES]
    assert spec.compacted and not spec.internal
    assert json.loads(Erasure(USER, "1", 0).value())["requestedAt"] == "1970-01-01T00:00:00.000Z"
