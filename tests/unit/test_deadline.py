"""The request-path deadline: expiry is a TimeoutError, anything else passes through."""

from __future__ import annotations

import asyncio

import pytest

from streams.ingress.deadline import Deadline


async def test_expiry_raises_timeout_and_the_task_carries_on() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError), Deadline(loop, 0.01):
        await asyncio.sleep(5)
    await asyncio.sleep(0)  # no cancellation left pending on the task
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_finishes_in_time_is_untouched() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, 5):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)


async def test_an_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    loop = asyncio.get_running_loop()

    async def guarded() -> None:
        with Deadline(loop, 5):
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_shielded_future_survives_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[int] = loop.create_future()
    with pytest.raises(TimeoutError), Deadline(loop, 0.01):
        await asyncio.shield(inner)
    assert not inner.cancelled()
    inner.set_result(1)


async def test_an_outside_cancellation_landing_with_the_expiry_still_propagates() -> None:
    loop = asyncio.get_running_loop()
    deadlines: list[Deadline] = []

    async def guarded() -> None:
        with Deadline(loop, 5) as deadline:
            deadlines.append(deadline)
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0)

    def expiry_and_shutdown_together() -> None:
        deadlines[0]._expire()
        task.cancel()

    loop.call_soon(expiry_and_shutdown_together)
    with pytest.raises(asyncio.CancelledError):
        await task
