"""Shared by the job-graph tests: a seeded DAG with fan-out, fan-in and diamonds, submitted
as one batch by entry name, and what its events say about the order jobs ran in."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dag:
    specs: list[dict[str, Any]]
    """Batch entries, shuffled: names are referenced before and after their entry."""
    edges: list[tuple[str, str, str]]
    """(upstream name, dependent name, condition)."""

    def downstream(self, names: Sequence[str], conditions: set[str]) -> set[str]:
        """Every job reachable from ``names`` through edges of ``conditions``."""
        found: set[str] = set()
        todo = list(names)
        while todo:
            current = todo.pop()
            for upstream, dependent, condition in self.edges:
                if upstream == current and condition in conditions and dependent not in found:
                    found.add(dependent)
                    todo.append(dependent)
        return found


def make_dag(count: int, seed: int, command: str = "true", **spec: Any) -> Dag:
    """``count`` jobs in layers: each takes 1 to 3 upstreams from the layers above (a fan-in),
    a few hubs have many dependents (fan-out), and shared upstreams make diamonds."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(count)]
    layers: list[list[str]] = []
    position = 0
    while position < count:
        width = rng.randint(5, 40)
        layers.append(names[position:position + width])
        position += width
    edges: list[tuple[str, str, str]] = []
    hubs = set(rng.sample(names[: max(1, count // 10)], k=min(5, max(1, count // 10))))
    above: list[str] = []
    for layer in layers:
        for name in layer:
            if above:
                picks = set(rng.sample(above[-80:], k=min(len(above[-80:]), rng.randint(1, 3))))
                hub = [h for h in hubs if h in above and rng.random() < 0.3]
                for upstream in sorted(picks | set(hub)):
                    condition = "after_any" if rng.random() < 0.1 else "after_ok"
                    edges.append((upstream, name, condition))
        above.extend(layer)
    by_dependent: dict[str, dict[str, list[str]]] = {}
    for upstream, dependent, condition in edges:
        by_dependent.setdefault(dependent, {}).setdefault(condition, []).append(upstream)
    specs = [{"name": name, "command": command, "depends_on": by_dependent.get(name, {}),
              **spec} for name in names]
    rng.shuffle(specs)
    return Dag(specs, edges)


def run_order(events: Sequence[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Per job id: the seq of its first RUNNING event, and of its last final event."""
    started: dict[str, int] = {}
    ended: dict[str, int] = {}
    for event in events:
        if getattr(event, "kind", "job") != "job":
            continue
        status = str(getattr(event.to_status, "value", event.to_status))
        if status == "RUNNING":
            started.setdefault(event.job_id, event.seq)
        elif status in ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "CANCELLED"):
            ended[event.job_id] = event.seq
    return started, ended
