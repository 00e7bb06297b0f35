"""The hosts table: each registered host's spec, state and last heartbeat."""

from __future__ import annotations

import json

from apr_sched.models import Host, HostState
from apr_sched.store.base import StoreBase, _iso, parse_time


class HostRows(StoreBase):
    """Registered hosts."""

    def save_host(self, host: Host) -> None:
        self._db.execute(
            "INSERT INTO hosts VALUES (?, ?, ?, ?, ?) ON CONFLICT(host_id) DO UPDATE SET "
            "spec=excluded.spec, state=excluded.state, last_heartbeat=excluded.last_heartbeat",
            (host.host_id, host.spec().model_dump_json(), host.state.value,
             _iso(host.registered_at), _iso(host.last_heartbeat)),
        )

    def delete_host(self, host_id: str) -> None:
        self._db.execute("DELETE FROM hosts WHERE host_id=?", (host_id,))

    def load_hosts(self) -> list[Host]:
        hosts = []
        for row in self._db.execute("SELECT * FROM hosts ORDER BY host_id"):
            spec = json.loads(row["spec"])
            hosts.append(Host(**spec, state=HostState(row["state"]),
                              registered_at=parse_time(row["registered_at"]),
                              last_heartbeat=parse_time(row["last_heartbeat"])))
        return hosts
