"""Python's cyclic garbage collector in a short-lived client command.

A flow runs ``apr-sched status ID`` once per step, and what such a process spends beyond
``python -c pass`` is mostly importing: tens of thousands of objects made and none of them
garbage. The collector still runs a pass every few hundred allocations while modules load
(several milliseconds, finding nothing), and once more over every object when the
interpreter exits. So:

- ``collection_paused()`` holds the collector off around imports and argument parsing (it
  is switched back on after, so a long ``wait`` or ``logs --follow`` runs with it as usual);
- ``skip_final_collection()``, for a process that is a client command, moves what exists at
  exit out of the collector's sight (``gc.freeze`` from ``atexit``) instead of walking it
  once more just before the memory is handed back. Nothing else of the exit changes: atexit
  handlers run, files and stdout are flushed, modules are torn down.
"""

from __future__ import annotations

import gc

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["collection_paused", "skip_final_collection"]

_registered = False


class collection_paused:  # lower case: it is used as a function, ``with collection_paused():``
    """No cyclic collection inside the block; the collector as it was after (nests)."""

    __slots__ = ("_was_enabled",)

    def __init__(self) -> None:
        self._was_enabled = False

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._was_enabled:
            gc.enable()


def skip_final_collection() -> None:
    """At interpreter exit, skip the collector's last pass over what is alive then. Only
    for a process that is one client command (a console script), never for a library
    user's process or the daemon: a cycle alive at exit is then not finalized."""
    global _registered
    if not _registered:
        import atexit

        atexit.register(gc.freeze)
        _registered = True
