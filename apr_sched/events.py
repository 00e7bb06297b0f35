"""Fan-out of scheduler events to live followers (the TUI, HTTP long-polls, flow scripts).

Each subscriber has its own bounded queue, so one slow follower never slows the scheduler or
the others; a follower that falls too far behind is told it lagged (and can re-read state)
instead of silently missing events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from apr_sched.errors import AprError
from apr_sched.models import Event


class SubscriptionLagged(AprError):
    """A follower fell more than its queue size behind; re-read state, then subscribe again."""

    code = "lagged"
    http_status = 410


class Subscription:
    """``async with scheduler.subscribe() as events: async for event in events: ...``"""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self._lagged = False

    def _offer(self, event: Event) -> None:
        if self._lagged:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._lagged = True

    def _end(self) -> None:
        if not self._lagged:
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                self._lagged = True

    async def get(self) -> Event | None:
        """The next event, or None once the scheduler has closed."""
        if self._lagged and self._queue.empty():
            raise SubscriptionLagged("event subscriber fell behind; re-read state")
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self.get()) is not None:
            yield event

    def close(self) -> None:
        self._hub.unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventHub:
    """Delivers each published event to every current subscriber and to long-poll waiters."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._pollers: set[asyncio.Future[None]] = set()
        self.last_seq = 0

    def subscribe(self, maxsize: int = 100_000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        for subscription in self._subscribers:
            for event in events:
                subscription._offer(event)
        self.last_seq = events[-1].seq
        for poller in self._pollers:
            if not poller.done():
                poller.set_result(None)
        self._pollers.clear()

    async def wait_after(self, seq: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an event newer than ``seq``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.last_seq <= seq:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            poller: asyncio.Future[None] = loop.create_future()
            self._pollers.add(poller)
            try:
                await asyncio.wait_for(poller, remaining)
            except TimeoutError:
                return self.last_seq > seq
            finally:
                self._pollers.discard(poller)
        return True

    def close(self) -> None:
        for subscription in list(self._subscribers):
            subscription._end()
        self._subscribers.clear()
        for poller in self._pollers:
            if not poller.done():
                poller.cancel()
        self._pollers.clear()
