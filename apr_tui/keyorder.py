"""Keys are handled one at a time, in the order they were typed, with the focus of the moment.

Textual resolves a key in two hops: the app posts it to the focused widget's queue, and the
bindings of that widget's ancestors run only once the key has bubbled back up to the app.
Keys that arrive together (``tmux send-keys``, a fast typist, a busy machine) are therefore
all posted to the first widget before the binding of the first one (Tab: focus the next
field) has run, and text typed after Tab lands in the field Tab left. The same race sends
keys typed after ``n`` to the jobs table instead of the form ``n`` opens.

``settle`` waits until what earlier keys started has been handled along the focus chain
(the focused widget, then each ancestor up to its screen, so bubbled messages are included;
a screen just pushed has mounted and focused its first field). The app then runs the key's
binding itself, or hands the key to the focused widget.

A terminal sends ESC and the next key as one two-byte sequence when they are typed within
the ESC delay (100 ms) or sent together, and Textual reads that as alt+key. Nothing here
binds alt keys, so ``split_escape`` gives back the two keys the person typed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from textual import events, messages
from textual.app import App
from textual.dom import DOMNode
from textual.keys import _character_to_key
from textual.message_pump import MessagePump

SETTLE_TIMEOUT_SEC = 1.0
"""Never hold a key longer than this for a widget that does not answer."""
SETTLE_ROUNDS = 4
"""Settling may move the focus (a dialog closed, a field focused): look again this often."""


PAINTING = (messages.Update, messages.Layout, messages.UpdateScroll, messages.Prompt)
"""Queued to a screen for the next repaint: they move no focus, so keys need not wait."""


def idle(node: MessagePump) -> bool:
    """True when nothing but repaint requests is queued to ``node``: then a key costs no
    round trip through it. (A handler of its own cannot be running: the app runs now.)"""
    queue = getattr(node, "_message_queue", None)
    values = getattr(queue, "values", None)  # Textual's own queue: a deque
    if values is None:
        return node.message_queue_size == 0
    return all(isinstance(message, PAINTING) for message in values)


async def processed(node: MessagePump, timeout: float = SETTLE_TIMEOUT_SEC) -> None:
    """Return once ``node`` has handled every message queued to it before this call."""
    if idle(node):
        return
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def mark() -> None:
        if not done.done():
            done.set_result(None)

    if not node.call_later(mark):  # closed or closing: nothing more will be handled there
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done, timeout)


def focus_chain(start: DOMNode) -> list[DOMNode]:
    """``start`` and its ancestors below the app, innermost first (the way keys bubble)."""
    return [node for node in start.ancestors_with_self if not isinstance(node, App)]


async def settle(app: App[Any]) -> None:
    """Wait until the focused widget and its ancestors have handled their queued messages,
    again while that moves the focus (bounded: ``SETTLE_ROUNDS``)."""
    for _ in range(SETTLE_ROUNDS):
        start: DOMNode = app.focused or app.screen
        for node in focus_chain(start):
            await processed(node)
        if (app.focused or app.screen) is start:
            return


def split_escape(event: events.Key) -> list[events.Key]:
    """``alt+n`` (ESC n read together) -> [escape, n]; any other key as it is."""
    character = event.character
    if not event.key.startswith("alt+") or character is None or len(character) != 1 \
            or not character.isprintable():
        return [event]
    return [events.Key("escape", "\x1b"), events.Key(_character_to_key(character), character)]
