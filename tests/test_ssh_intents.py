"""Stop intents on native SSH hosts: the timeline says "stop requested" before the end,
whatever the network's round trip, and the stop survives a scheduler restart."""

from __future__ import annotations

from apr_sched import JobStatus
from tests.test_ssh_hosts import online, running, ssh_spec


async def test_native_ssh_stop_records_its_events_in_order(ssh_hosts, make_scheduler):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    for _ in range(3):  # the race was timing-dependent: try it a few times
        job = await s.submit({"command": "sleep 300"})
        await running(s, job.job_id)
        await s.stop(job.job_id)
        done = await s.get_job((await s.wait(job.job_id, 15)).job_id)
        assert done.status is JobStatus.STOPPED
        timeline = [(e.from_status, e.to_status, e.reason) for e in done.events]
        requested = next(i for i, e in enumerate(timeline) if "stop requested" in e[2])
        ended = next(i for i, e in enumerate(timeline) if e[1] == "STOPPED")
        assert requested < ended, timeline
        assert timeline[-1][1] == "STOPPED" and timeline[-1][0] == "RUNNING", timeline
