"""Request deadlines swept by one timer: a due future gets TimeoutError, a due task is
cancelled (and told apart from an outside cancellation), a finished one is left alone."""

from __future__ import annotations

import asyncio
import gc

import pytest

from streams.ingress.deadline import Expiry


async def test_a_future_still_pending_when_due_gets_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, 0.02, period_s=0.005)
    waiter: asyncio.Future[None] = loop.create_future()
    expiry.watch(waiter)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiter, 1.0)
    assert len(expiry) == 0


async def test_a_settled_or_released_deadline_never_fires() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, 0.02, period_s=0.005)
    settled: asyncio.Future[int] = loop.create_future()
    released: asyncio.Future[int] = loop.create_future()
    expiry.watch(settled)
    expiry.done(expiry.watch(released))
    settled.set_result(1)
    later: asyncio.Future[None] = loop.create_future()
    expiry.watch(later)  # due after the others: once it fires, the sweep has passed them
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(later, 1.0)
    assert settled.result() == 1
    assert not released.done()  # released: the sweep no longer knows it
    assert len(expiry) == 0


async def test_deadlines_fire_in_order_and_the_timer_stops_when_none_is_left() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, 0.03, period_s=0.005)
    fired: list[int] = []
    waiters = []
    for i in range(5):
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(lambda _f, i=i: fired.append(i))
        expiry.watch(waiter)
        waiters.append(waiter)
        await asyncio.sleep(0.005)
    await asyncio.wait(waiters, timeout=1.0)
    assert fired == [0, 1, 2, 3, 4]
    for waiter in waiters:
        assert isinstance(waiter.exception(), TimeoutError)
    assert not expiry._armed


async def _reader(expiry: Expiry, outcome: list[str]) -> None:
    """A body read as the ingress does it: its deadline cancels it, an outside
    cancellation passes through."""
    task = asyncio.current_task()
    assert task is not None
    number = expiry.watch(task)
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        if not expiry.expired(number) or task.uncancel() > 0:
            raise
        outcome.append("timed out")
    finally:
        expiry.done(number)


async def test_a_due_task_is_cancelled_and_the_expiry_is_known() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, 0.02, period_s=0.005)
    outcome: list[str] = []

    await asyncio.wait_for(asyncio.create_task(_reader(expiry, outcome)), 1.0)
    assert outcome == ["timed out"]
    assert not expiry._expired


async def test_an_outside_cancellation_passes_through() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, 5.0, period_s=0.005)

    task = asyncio.create_task(_reader(expiry, []))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outside_cancellation_landing_with_the_expiry_still_propagates() -> None:
    loop = asyncio.get_running_loop()
    expiry = Expiry(loop, 5.0, period_s=5.0)

    task = asyncio.create_task(_reader(expiry, []))
    await asyncio.sleep(0)

    def expiry_and_shutdown_together() -> None:
        _due, number = expiry._fifo[0]
        expiry._fifo[0] = (loop.time(), number)  # due now
        expiry._sweep()
        task.cancel()

    loop.call_soon(expiry_and_shutdown_together)
    with pytest.raises(asyncio.CancelledError):
        await task


def test_queued_deadlines_are_invisible_to_the_garbage_collector() -> None:
    loop = asyncio.new_event_loop()
    try:
        expiry = Expiry(loop, 60.0)
        futures = [loop.create_future() for _ in range(100)]
        for future in futures:
            expiry.done(expiry.watch(future))
        gc.collect()
        assert not any(gc.is_tracked(entry) for entry in expiry._fifo)
    finally:
        loop.close()
