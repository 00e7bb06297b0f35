"""Fair share: among jobs of equal priority, whose turn it is.

LSF's dynamic-priority idea, kept small: each owner has a share (``[fairshare] alice = 2``,
default 1) and a usage that decays with a half-life; an owner's dynamic priority is

    share / (1 + usage_cpu_sec * usage_factor + running_slots * run_factor)

and the owner with the highest goes first. Counting running slots makes turns alternate
at once (one engineer's 500-job sweep interleaves with a colleague's 5 jobs from the first
dispatch, before any usage accrued); decayed usage remembers who ran a lot lately. Pure:
the Scheduler reports starts and ends and persists ``snapshot()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["FairShare", "FairShareConfig", "OwnerStanding"]


@dataclass(frozen=True)
class FairShareConfig:
    shares: Mapping[str, float]
    default_share: float = 1.0
    half_life_sec: float = 86400.0
    usage_factor: float = 1.0 / 3600.0
    """Weight of one decayed CPU-second: by default an hour of CPU weighs one running slot."""
    run_factor: float = 1.0


@dataclass(frozen=True)
class OwnerStanding:
    owner: str
    share: float
    usage_cpu_sec: float
    running_slots: int
    priority: float


class FairShare:
    def __init__(self, config: FairShareConfig,
                 usage: Mapping[str, tuple[float, float]] | None = None) -> None:
        """``usage``: owner -> (decayed CPU-seconds, as of this time), from a snapshot."""
        self.config = config
        self._usage: dict[str, tuple[float, float]] = dict(usage or {})
        self._running: dict[str, int] = {}

    def share(self, owner: str) -> float:
        return self.config.shares.get(owner, self.config.default_share)

    def usage(self, owner: str, now: float) -> float:
        value, at = self._usage.get(owner, (0.0, now))
        return value * math.exp2(-max(0.0, now - at) / self.config.half_life_sec)

    def started(self, owner: str, slots: int) -> None:
        self._running[owner] = self._running.get(owner, 0) + slots

    def ended(self, owner: str, slots: int, cpu_sec: float, now: float) -> None:
        """An attempt ended: its slots are free and its CPU time (× slots, as the issue
        counts usage) joins the owner's decayed usage."""
        left = self._running.get(owner, 0) - slots
        if left > 0:
            self._running[owner] = left
        else:
            self._running.pop(owner, None)
        if cpu_sec > 0:
            self._usage[owner] = (self.usage(owner, now) + cpu_sec * max(1, slots), now)

    def priority(self, owner: str, now: float) -> float:
        config = self.config
        load = (1.0 + self.usage(owner, now) * config.usage_factor
                + self._running.get(owner, 0) * config.run_factor)
        return self.share(owner) / load

    def best(self, owners: Iterable[str], now: float) -> str | None:
        """The owner whose turn it is among ``owners`` (ties: the name, for a stable
        order); O(owners)."""
        best: tuple[float, str] | None = None
        for owner in owners:
            key = (-self.priority(owner, now), owner)
            if best is None or key < best:
                best = key
        return best[1] if best else None

    def standings(self, owners: Iterable[str], now: float) -> list[OwnerStanding]:
        """Everyone's figures, best first (``apr-sched fairshare``)."""
        rows = [OwnerStanding(owner, self.share(owner), self.usage(owner, now),
                              self._running.get(owner, 0), self.priority(owner, now))
                for owner in set(owners) | set(self._usage) | set(self._running)]
        return sorted(rows, key=lambda row: (-row.priority, row.owner))

    def snapshot(self, now: float, *, floor: float = 1.0) -> dict[str, tuple[float, float]]:
        """Usage to persist, decayed to ``now``; owners decayed below ``floor`` CPU-seconds
        are dropped, so the table does not grow with everyone who ever ran a job."""
        kept = {}
        for owner in self._usage:
            value = self.usage(owner, now)
            if value >= floor:
                kept[owner] = (value, now)
        self._usage = dict(kept)
        return kept
