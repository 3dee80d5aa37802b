"""The broker goes away mid-run: eduMe is told to retry (503 + Retry-After) within the
deadline, nothing is acknowledged that was not written, and the ingress recovers by itself
when the broker is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker
from tests.support import FIXTURES, compact, make_settings, read_topic, serve_ingress

LEARNER = "edume.learner.events"


async def _wait_ready(ingress, want: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await ingress.get("/readyz"))[0] == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {want}")


async def _wait_metric(ingress, line: bytes, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if line in (await ingress.get("/metrics"))[1].split(b"\n"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"metrics never showed {line!r}")


async def test_broker_stopped_gives_503_then_recovers_without_restart(tmp_path, prefix) -> None:
    dedicated = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        settings = make_settings(dedicated.bootstrap, prefix, publish_timeout_s=1.0)
        async with serve_ingress(settings) as ingress:
            before = compact((FIXTURES / "learner.added.json").read_bytes())
            assert (await ingress.post(before))[0] == 202

            dedicated.stop()
            during = compact((FIXTURES / "learner.activated.json").read_bytes())
            started = time.monotonic()
            status, headers, answer = await ingress.post(during)
            elapsed = time.monotonic() - started
            assert status == 503, answer
            assert int(headers["Retry-After"]) > 0
            assert elapsed < settings.publish_timeout_s + 0.5
            await _wait_ready(ingress, 503)
            # The 503'd record stays queued in the producer until it expires. Restart only
            # after that: the embedded broker comes back with no topics, and acknowledges a
            # write to a partition of a topic it has not created yet (then loses it).
            await _wait_metric(ingress, b"edume_ingress_publishes_in_flight 0.0")

            # Same port, fresh memory: the operator (or `dev`) recreates the topics.
            dedicated = EmbeddedBroker(port=dedicated.port, log_path=tmp_path / "t2.log").start()
            await ensure_topics(dedicated.kafka, prefix)
            await _wait_ready(ingress, 200)
            deadline = time.monotonic() + 20
            while True:  # eduMe's retry, until the producer has reconnected
                status, _, answer = await ingress.post(during)
                if status == 202 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert status == 202 and answer["duplicate"] is False, answer
            records = await read_topic(dedicated.bootstrap, ingress.topic(LEARNER), 1)
            assert [r.value for r in records] == [during]
    finally:
        dedicated.stop()


async def test_ack_after_the_deadline_makes_the_retry_a_duplicate(tmp_path, prefix) -> None:
    """A broker that stalls (SIGSTOP) past the deadline: eduMe gets 503; the record is still
    written when the broker resumes, and eduMe's retry is then answered duplicate instead of
    being published a second time."""
    dedicated = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        settings = make_settings(dedicated.bootstrap, prefix, publish_timeout_s=1.0)
        async with serve_ingress(settings) as ingress:
            body = compact((FIXTURES / "learner.activity.started.course.json").read_bytes())
            assert dedicated.process is not None
            os.kill(dedicated.process.pid, signal.SIGSTOP)
            try:
                status, _, _ = await ingress.post(body)
                assert status == 503
            finally:
                os.kill(dedicated.process.pid, signal.SIGCONT)
            records = await read_topic(dedicated.bootstrap, ingress.topic(LEARNER), 1)
            assert len(records) == 1 and records[0].value == body
            status, _, answer = await ingress.post(body)
            assert status == 202 and answer["duplicate"] is True
            assert len(await read_topic(dedicated.bootstrap, ingress.topic(LEARNER), 1)) == 1
    finally:
        dedicated.stop()


class _RefusingOnce:
    """The producer, except that its first ``produce`` fails as a full queue does."""

    def __init__(self, producer, error: Exception) -> None:
        self._producer = producer
        self._error: Exception | None = error

    def produce(self, *args, **kwargs):
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._producer.produce(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._producer, name)

    def __len__(self) -> int:
        return len(self._producer)


@pytest.mark.parametrize(("error", "said"), [
    (BufferError(), "queue is full"),
    (TypeError("unexpected"), "the producer failed: TypeError"),
])
async def test_a_refused_record_answers_503_at_once_and_leaves_nothing_stuck(
    ingress, broker, monkeypatch, error, said
) -> None:
    """A record the producer will not queue (its queue is full, or anything unexpected) is
    answered 503 straight away, its in-flight entry is dropped, and eduMe's retry is
    published once."""
    publisher = ingress.app.publisher
    monkeypatch.setattr(publisher, "_producer", _RefusingOnce(publisher._producer, error))
    body = compact((FIXTURES / "learner.activity.finished.course.json").read_bytes())
    started = time.monotonic()
    status, headers, answer = await ingress.post(body)
    assert status == 503 and "Retry-After" in headers
    assert said in answer["error"]
    assert time.monotonic() - started < ingress.settings.publish_timeout_s / 2
    assert ingress.app._in_flight == {}
    status, _, answer = await ingress.post(body)  # eduMe's retry
    assert status == 202 and answer["duplicate"] is False
    assert len(await read_topic(broker.bootstrap, ingress.topic(LEARNER), 1)) == 1


class _Swallowing:
    """The producer, except that it takes records and never reports them (a producer
    dropped while it held them)."""

    def __init__(self, producer) -> None:
        self._producer = producer

    def produce(self, *args, **kwargs) -> None:
        return None

    def __getattr__(self, name):
        return getattr(self._producer, name)

    def __len__(self) -> int:
        return len(self._producer)


async def test_a_delivery_never_reported_does_not_block_its_event_for_ever(
    ingress, broker, monkeypatch
) -> None:
    """An in-flight entry older than the producer's delivery timeout is failed when the
    event comes again, and the event is published."""
    publisher = ingress.app.publisher
    real = publisher._producer
    monkeypatch.setattr(publisher, "_producer", _Swallowing(real))
    body = compact((FIXTURES / "learner.added.json").read_bytes())
    status, _, _ = await ingress.post(body)
    assert status == 503  # no acknowledgement within the publish timeout
    assert len(ingress.app._in_flight) == 1
    monkeypatch.setattr(publisher, "_producer", real)
    monkeypatch.setattr(ingress.app, "_stale_after_s", 0.0)
    status, _, answer = await ingress.post(body)
    assert status == 202 and answer["duplicate"] is False
    assert ingress.app._in_flight == {}
    assert len(await read_topic(broker.bootstrap, ingress.topic(LEARNER), 1)) == 1
