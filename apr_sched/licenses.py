"""Counted cluster-wide resources (license tokens): how many are free, who holds them.

A job asks ``resource_request.licenses = {"innovus": 1}``; it may start only when its host
fits and its tokens are free. Free = total − held by apr_sched jobs − used outside
apr_sched − margin, where "used outside" comes from the resource's probe: the seats the
license server reports in use beyond those apr_sched's own running jobs hold (they
check out what they hold, so they are part of the server's count). ``margin`` keeps seats
free for interactive use and covers the time between a probe and a checkout.

Pure bookkeeping with no clock and no I/O: the Scheduler takes tokens in the same
transition that starts a job and gives them back in the one that ends it, so they are
freed exactly once, and it rebuilds the holdings from the running jobs after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LicensePool", "LicenseUse", "ResourceSpec"]


@dataclass(frozen=True)
class ResourceSpec:
    name: str
    total: int
    margin: int = 0
    """Seats never handed to apr_sched jobs (kept for use outside, and probe lag)."""
    release_on_suspend: bool = False
    """Give a PAUSED job's tokens back (its tool must release the seat when stopped, as
    some license clients do on SIGTSTP); resume then needs them free again. Off by default:
    most EDA tools keep the checkout while suspended."""


@dataclass(frozen=True)
class LicenseUse:
    """One resource's figures, for pending reasons, metrics and the TUI."""

    name: str
    total: int
    held: int
    """By apr_sched's running (and, unless released on suspend, paused) jobs."""
    outside: int
    margin: int
    probe_note: str | None = None

    @property
    def free(self) -> int:
        return max(0, self.total - self.held - self.outside - self.margin)


@dataclass
class _Resource:
    spec: ResourceSpec
    held: int = 0
    server_in_use: int | None = None
    probe_note: str | None = None


@dataclass
class LicensePool:
    _resources: dict[str, _Resource] = field(default_factory=dict)
    _holdings: dict[str, dict[str, int]] = field(default_factory=dict)
    """job id -> tokens it holds now."""

    def configure(self, specs: Mapping[str, ResourceSpec]) -> None:
        """Set totals (config load, or an admin's change); holdings are kept, so a total
        lowered below what is held just blocks new starts until enough end."""
        for name, spec in specs.items():
            resource = self._resources.get(name)
            if resource is None:
                self._resources[name] = _Resource(spec)
            else:
                resource.spec = spec

    def names(self) -> list[str]:
        return sorted(self._resources)

    def unknown(self, request: Mapping[str, int]) -> list[str]:
        """Requested resources no config defines (refused at submit, named)."""
        return sorted(name for name in request if name not in self._resources)

    def use(self, name: str) -> LicenseUse:
        resource = self._resources[name]
        outside = 0
        if resource.server_in_use is not None:
            outside = max(0, resource.server_in_use - resource.held)
        return LicenseUse(name, resource.spec.total, resource.held, outside,
                          resource.spec.margin, resource.probe_note)

    def shortage(self, request: Mapping[str, int]) -> str | None:
        """Why ``request`` cannot be granted now (the first resource short), or None."""
        for name in sorted(request):
            want = request[name]
            if not want:
                continue
            use = self.use(name)
            if want > use.free:
                return _short_reason(use, want)
        return None

    def take(self, job_id: str, request: Mapping[str, int]) -> None:
        """The job starts holding ``request``; call only after ``shortage`` said None (or
        when rebuilding after a restart, where what ran must be counted as it is)."""
        if job_id in self._holdings:
            raise RuntimeError(f"job {job_id} already holds tokens")
        held = {name: n for name, n in request.items() if n}
        for name, n in held.items():
            self._resources[name].held += n
        self._holdings[job_id] = held

    def release(self, job_id: str) -> dict[str, int]:
        """The job ended (or was suspended with release_on_suspend): what it gave back.
        A second release of the same job gives back nothing."""
        held = self._holdings.pop(job_id, {})
        for name, n in held.items():
            resource = self._resources.get(name)
            if resource is not None:
                resource.held -= n
        return held

    def suspendable(self, request: Mapping[str, int]) -> dict[str, int]:
        """The part of ``request`` given back while its job is PAUSED."""
        return {name: n for name, n in request.items()
                if n and name in self._resources
                and self._resources[name].spec.release_on_suspend}

    def holding(self, job_id: str) -> dict[str, int]:
        return dict(self._holdings.get(job_id, {}))

    def probed(self, name: str, in_use: int | None, note: str | None) -> None:
        """The probe's last good count of seats in use (everyone's) and what it said."""
        resource = self._resources[name]
        resource.server_in_use = in_use
        resource.probe_note = note


def _short_reason(use: LicenseUse, want: int) -> str:
    """``waiting for license innovus: 20 of 20 in use, 3 used outside apr_sched``."""
    in_use = use.held + use.outside
    text = f"waiting for license {use.name}: {in_use} of {use.total} in use"
    if use.outside:
        text += f", {use.outside} used outside apr_sched"
    if use.margin:
        text += f", {use.margin} kept free"
    if want > 1:
        text += f"; needs {want}"
    if use.total - use.margin < want:
        text += f" (more than the {use.total - use.margin} it may ever have)"
    if use.probe_note and use.probe_note.startswith("probe failing"):
        text += f" [{use.probe_note}]"
    return text
