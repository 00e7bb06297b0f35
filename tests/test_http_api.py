"""The /scheduler contract over real sockets, with every reply checked against OpenAPI."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.http.service import HttpService
from tests.conftest import host, wait_until
from tests.http_helpers import Api, KeepAliveClient, OpenApiChecker, request


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Scheduler, Api]]:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        token = (scheduler.state_dir / "token").read_text().strip()
        doc = await asyncio.to_thread(request, service.url, "GET", "/scheduler/openapi.json",
                                      token=token)
        api = Api(service.url, token, OpenApiChecker(doc.data))
        yield scheduler, api
        assert api.checker is not None and api.checker.checked > 0


async def job_count(scheduler: Scheduler) -> int:
    return (await scheduler.list_jobs()).total


async def test_token_file_is_private_and_required(served):
    scheduler, api = served
    mode = stat.S_IMODE(os.stat(scheduler.state_dir / "token").st_mode)
    assert mode == 0o600
    health = await api.get("/scheduler/health", token=None)
    assert health.status == 200 and health.data["status"] == "ok"
    missing = await api.get("/scheduler/jobs", token=None)
    assert missing.status == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "missing bearer token" in missing.data["error"]["message"]
    wrong = await api.post("/scheduler/jobs", {"command": "true"}, token="nope")
    assert wrong.status == 401 and wrong.data["error"]["message"] == "wrong bearer token"
    assert await job_count(scheduler) == 0


async def test_auth_off_serves_without_a_token(make_scheduler):
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0, auth=False) as service:
        api = Api(service.url, None)
        reply = await api.post("/scheduler/jobs", {"command": "true"})
        assert reply.status == 201
        assert not (scheduler.state_dir / "token").exists()


async def test_health_and_metrics(served):
    scheduler, api = served
    health = await api.get("/scheduler/health")
    assert set(health.data) == {"status", "degraded_reason", "version", "uptime_sec",
                                "hosts_online",
                                "jobs_pending", "jobs_running", "last_event_seq"}
    assert health.data["last_event_seq"] == scheduler.last_event_seq > 0
    assert health.data["hosts_online"] == 1
    job = (await api.post("/scheduler/jobs", {"command": "true"})).data
    await scheduler.wait(job["job_id"], 10)
    metrics = await api.get("/scheduler/metrics/summary")
    assert metrics.status == 200
    assert metrics.data["jobs_by_status"]["SUCCEEDED"] == 1
    assert metrics.data["slots"]["total"] == 4


async def test_hosts_endpoints(served):
    scheduler, api = served
    spec = {"host_id": "host-b", "total_slots": 2, "total_cpu": 8, "total_memory_gb": 32,
            "labels": {"tool": "icc2"}}
    created = await api.post("/scheduler/hosts/register", spec)
    assert created.status == 201 and created.data["state"] == "ONLINE"
    updated = await api.post("/scheduler/hosts/register", {**spec, "total_slots": 4})
    assert updated.status == 200 and updated.data["total_slots"] == 4
    listed = await api.get("/scheduler/hosts")
    assert listed.data["total"] == 2
    assert [h["host_id"] for h in listed.data["hosts"]] == ["h1", "host-b"]
    one = await api.get("/scheduler/hosts/host-b")
    assert one.data["labels"] == {"tool": "icc2"} and one.data["running_jobs"] == 0
    beat = await api.post("/scheduler/hosts/host-b/heartbeat")
    assert beat.status == 200 and beat.data["state"] == "ONLINE" and beat.data["last_heartbeat"]
    loaded = await api.post("/scheduler/hosts/host-b/heartbeat",
                            {"load_avg_1m": 1.5, "free_memory_gb": 20})
    assert loaded.status == 200
    assert (await api.get("/scheduler/hosts/host-b")).data["load"]["load_avg_1m"] == 1.5
    bad_load = await api.post("/scheduler/hosts/host-b/heartbeat", {"load_avg": 1})
    assert bad_load.status == 400 and bad_load.data["error"]["details"][0]["field"] == "load_avg"
    job = (await api.post("/scheduler/jobs", {
        "command": "sleep 30", "resource_request": {"host_labels": {"tool": "icc2"}}})).data
    await wait_until(lambda: scheduler._jobs[job["job_id"]].status is JobStatus.RUNNING)
    busy = await api.delete("/scheduler/hosts/host-b")
    assert busy.status == 409 and job["job_id"] in busy.data["error"]["message"]
    await api.post(f"/scheduler/jobs/{job['job_id']}/stop")
    await scheduler.wait(job["job_id"], 10)
    gone = await api.delete("/scheduler/hosts/host-b")
    assert gone.status == 200 and gone.data["host_id"] == "host-b"
    assert (await api.get("/scheduler/hosts/host-b")).status == 404
    assert (await api.post("/scheduler/hosts/nope/heartbeat")).status == 404


async def test_job_lifecycle_over_http(served, tmp_path):
    scheduler, api = served
    created = await api.post("/scheduler/jobs", {
        "project": "P1", "design": "top", "owner": "cad_user", "priority": 2,
        "timeout_sec": 3600, "retry_limit": 1, "workdir": str(tmp_path),
        "command": 'bash -c "echo start && sleep 30 && echo done"',
        "resource_request": {"cpu": 1, "memory_gb": 1, "slots": 1}})
    assert created.status == 201
    job_id = created.data["job_id"]
    assert created.data["status"] in ("PENDING", "RUNNING")
    await wait_until(lambda: scheduler._jobs[job_id].pgid)
    running = await api.get("/scheduler/jobs?status=RUNNING")
    assert [j["job_id"] for j in running.data["jobs"]] == [job_id]
    assert "events" not in running.data["jobs"][0]
    paused = await api.post(f"/scheduler/jobs/{job_id}/pause")
    assert paused.status == 200 and paused.data["status"] == "PAUSED"
    again = await api.post(f"/scheduler/jobs/{job_id}/pause")
    assert again.status == 409 and again.data["error"]["details"]["status"] == "PAUSED"
    assert (await api.post(f"/scheduler/jobs/{job_id}/resume")).data["status"] == "RUNNING"
    async def started() -> bool:
        return (await scheduler.tail_log(job_id)).lines == ["start"]

    await wait_until(started, timeout=5)
    logs = await api.get(f"/scheduler/jobs/{job_id}/logs?tail=200")
    assert logs.data["lines"] == ["start"] and logs.data["attempt"] == 1
    text = await api.get(f"/scheduler/jobs/{job_id}/logs?tail=5&format=text")
    assert text.raw == b"start\n" and text.headers["content-type"].startswith("text/plain")
    plain = await api.get(f"/scheduler/jobs/{job_id}/logs", headers={"Accept": "text/plain"})
    assert plain.raw == b"start\n"
    assert (await api.post(f"/scheduler/jobs/{job_id}/rerun")).status == 409
    stopped = await api.post(f"/scheduler/jobs/{job_id}/stop")
    assert stopped.status == 200
    await scheduler.wait(job_id, 10)
    detail = await api.get(f"/scheduler/jobs/{job_id}")
    assert detail.data["status"] == "STOPPED"
    assert [e["to_status"] for e in detail.data["events"]][:3] == ["PENDING", "RUNNING", "PAUSED"]
    assert len(detail.data["attempts"]) == 1
    rerun = await api.post(f"/scheduler/jobs/{job_id}/rerun")
    assert rerun.status == 200 and rerun.data["attempt"] == 2
    await wait_until(lambda: scheduler._jobs[job_id].pgid)
    await api.post(f"/scheduler/jobs/{job_id}/stop")
    await scheduler.wait(job_id, 10)
    first = await api.get(f"/scheduler/jobs/{job_id}/logs?attempt=1")
    assert first.data["lines"][0] == "start"  # then bash may say "Terminated"
    assert (await api.get(f"/scheduler/jobs/{job_id}/logs?attempt=3")).status == 404


async def test_log_follow_by_offset(served):
    scheduler, api = served
    job = (await api.post("/scheduler/jobs", {"command": "for i in 1 2 3; do echo line$i; done; "
                                                         "printf partial"})).data
    await scheduler.wait(job["job_id"], 10)
    first = await api.get(f"/scheduler/jobs/{job['job_id']}/logs?offset=0")
    assert first.data["lines"] == ["line1", "line2", "line3", "partial"]
    rest = await api.get(f"/scheduler/jobs/{job['job_id']}/logs?offset={first.data['offset']}")
    assert rest.data["lines"] == [] and rest.data["offset"] == first.data["offset"]
    middle = await api.get(f"/scheduler/jobs/{job['job_id']}/logs?offset=6")
    assert middle.data["lines"] == ["line2", "line3", "partial"]


async def test_batch_submit_all_or_nothing(served):
    scheduler, api = served
    jobs = [{"command": "true", "project": f"P{i % 3}"} for i in range(20)]
    ok = await api.post("/scheduler/jobs/batch", {"jobs": jobs})
    assert ok.status == 201 and ok.data["count"] == 20
    assert [int(i) for i in ok.data["job_ids"]] == list(range(1, 21))
    bare = await api.post("/scheduler/jobs/batch", jobs[:3])
    assert bare.status == 201 and bare.data["count"] == 3
    bad = [*jobs[:5], {"command": "true", "priority": "high"}, {"command": ""},
           {"cmd": "x"}]
    rejected = await api.post("/scheduler/jobs/batch", {"jobs": bad})
    assert rejected.status == 400
    fields = [d["field"] for d in rejected.data["error"]["details"]]
    assert "jobs[5].priority" in fields and "jobs[6].command" in fields
    assert "jobs[7].cmd" in fields and "jobs[7].command" in fields
    assert await job_count(scheduler) == 23
    for body in ({"jobs": "x"}, {"job": []}, {"jobs": []}, "text"):
        assert (await api.post("/scheduler/jobs/batch", body)).status == 400
    assert await job_count(scheduler) == 23


async def test_list_filters_and_paging(served):
    _scheduler, api = served
    await api.post("/scheduler/jobs/batch", [
        {"command": "sleep 30", "project": "P1" if i < 4 else "P2", "owner": f"u{i % 2}",
         "resource_request": {"memory_gb": 1000}, "allow_pending": True} for i in range(6)])
    assert (await api.get("/scheduler/jobs?project=P1")).data["total"] == 4
    assert (await api.get("/scheduler/jobs?project=P1&owner=u0")).data["total"] == 2
    page = await api.get("/scheduler/jobs?limit=2&offset=1")
    assert [j["job_id"] for j in page.data["jobs"]] == ["2", "3"] and page.data["total"] == 6
    picked = await api.get("/scheduler/jobs?id=4,2,999")
    assert [j["job_id"] for j in picked.data["jobs"]] == ["2", "4"]
    assert (await api.get("/scheduler/jobs?id=a%2Fb")).status == 400
    pending = await api.get("/scheduler/jobs?status=PENDING,HELD&status=RUNNING")

    assert pending.data["total"] == 6
    assert "largest host" in pending.data["jobs"][0]["pending_reason"]
    for query, field in [("status=DONE", "status"), ("limit=-1", "limit"),
                         ("offset=x", "offset"), ("limit=99999999999", "limit"),
                         ("colour=red", "colour")]:
        reply = await api.get(f"/scheduler/jobs?{query}")
        assert reply.status == 400, query
        assert reply.data["error"]["details"][0]["field"] == field


async def test_events_long_poll(served):
    _scheduler, api = served
    first = await api.get("/scheduler/events?since=0")
    last = first.data["last_seq"]
    assert first.data["events"][0]["kind"] == "host"
    waiter = asyncio.create_task(api.get(f"/scheduler/events?since={last}&wait=10"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    job = (await api.post("/scheduler/jobs", {"command": "true"})).data
    reply = await asyncio.wait_for(waiter, 5)
    assert reply.data["events"][0]["job_id"] == job["job_id"]
    assert reply.data["events"][0]["kind"] == "job"
    quiet = await api.get(f"/scheduler/events?since={10**9}&wait=0.1")
    assert quiet.data["events"] == []
    assert (await api.get("/scheduler/events?wait=61")).status == 400


async def test_bad_input_changes_nothing(served):
    scheduler, api = served
    cases = [
        (b'{"command": "true"', "invalid JSON"),
        (b'\xff\xfe{"command": "true"}', "UTF-8"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'{"command": "true", "retry_limt": 1}', "retry_limt"),
        (b'{"command": "true", "priority": 1e999}', "priority"),
        (b'{"command": "true", "priority": -99999999999}', "priority"),
        (b'{"command": "true", "resource_request": {"cpu": -1}}', "cpu"),
        (b'{"command": "true", "priority": ' + b"9" * 5000 + b"}", "JSON"),
        (b'{"command": "true", "timeout_sec": "1h"}', "timeout_sec"),
        (b'{"command": "true\\u0000"}', "command"),
    ]
    for body, words in cases:
        reply = await api.post("/scheduler/jobs", raw_body=body)
        assert reply.status == 400, body[:40]
        assert words in json.dumps(reply.data), (body[:40], reply.data)
    assert await job_count(scheduler) == 0
    assert (await api.get("/scheduler/health")).status == 200


async def test_ids_in_paths_never_touch_the_filesystem(served, tmp_path):
    _scheduler, api = served
    secret = tmp_path / "secret.log"
    secret.write_text("do not read\n")
    for path in ["/scheduler/jobs/..%2F..%2Fetc%2Fpasswd/logs",
                 "/scheduler/jobs/%2E%2E/logs", "/scheduler/jobs/a%00b",
                 "/scheduler/jobs/.hidden", "/scheduler/hosts/a%2Fb",
                 f"/scheduler/jobs/{'%2E%2E%2F' * 5}{str(secret).lstrip('/')}/logs"]:
        reply = await api.get(path)
        assert reply.status in (400, 404), path
        assert reply.status == 404 or "not a valid id" in reply.data["error"]["message"]
        assert b"do not read" not in reply.raw
    assert (await api.get("/scheduler/jobs/999")).status == 404
    assert (await api.get("/scheduler/jobs/999/logs")).status == 404
    assert (await api.get("/scheduler/nothing")).status == 404
    wrong_method = await api.call("PUT", "/scheduler/jobs")
    assert wrong_method.status == 405 and "GET" in wrong_method.headers["allow"]
    assert (await api.get("/scheduler/jobs/1/pause")).status == 405


async def test_fifty_concurrent_clients_submit_five_thousand_jobs(make_scheduler):
    scheduler = await make_scheduler(hosts=[host("h", slots=1)])
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        token = (scheduler.state_dir / "token").read_text().strip()

        async def client(n: int) -> list[str]:
            ids = []
            async with KeepAliveClient(service.url, token) as conn:
                for i in range(100):
                    reply = await conn.request("POST", "/scheduler/jobs", {
                        "command": "true", "name": f"c{n}-{i}", "allow_pending": True,
                        "resource_request": {"memory_gb": 10_000}})
                    assert reply.status == 201
                    ids.append(reply.data["job_id"])
            return ids

        results = await asyncio.gather(*(client(n) for n in range(50)))
    ids = [i for r in results for i in r]
    assert len(ids) == 5000 and len(set(ids)) == 5000
    page = await scheduler.list_jobs()
    assert page.total == 5000
    assert {j.name for j in page.jobs} == {f"c{n}-{i}" for n in range(50) for i in range(100)}


async def test_openapi_describes_every_route(served):
    scheduler, api = served
    doc = (await api.get("/scheduler/openapi.json")).data
    assert doc["openapi"].startswith("3.1")
    routes = {(r.method.lower(), r.template) for r in
              __import__("apr_sched.http.api", fromlist=["x"]).SchedulerApi(
                  scheduler, token=None).routes}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if m != "description"}
    assert routes == documented
    assert "JobSpec" in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["JobSpec"]["additionalProperties"] is False


async def raw_exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_oversized_requests_create_nothing(served):
    scheduler, api = served
    head = (f"POST /scheduler/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token}\r\n"
            "Content-Type: application/json\r\n")
    too_big = await raw_exchange(api.url, (head + "Content-Length: 20000000\r\n\r\n").encode()
                                 + b'{"command": "true", "name": "' + b"x" * 60000)
    assert too_big.startswith(b"HTTP/1.1 413 ")
    many_headers = "".join(f"X-H{i}: v\r\n" for i in range(1000))
    body = b'{"command": "true"}'
    too_many = await raw_exchange(api.url, (head + many_headers
                                            + f"Content-Length: {len(body)}\r\n\r\n").encode()
                                  + body)
    assert too_many.startswith(b"HTTP/1.1 431 ")
    garbage = await raw_exchange(api.url, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert await job_count(scheduler) == 0
    assert (await api.get("/scheduler/health")).status == 200


async def test_closing_answers_long_polls_at_once(make_scheduler):
    scheduler = await make_scheduler()
    service = HttpService(scheduler, "127.0.0.1", 0, auth=False)
    await service.start()
    api = Api(service.url, None)
    last = scheduler.last_event_seq
    poll = asyncio.create_task(api.get(f"/scheduler/events?since={last}&wait=30"))
    await wait_until(lambda: scheduler._hub._pollers, timeout=5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await service.close()
    reply = await asyncio.wait_for(poll, 5)
    assert reply.status == 200 and reply.data["events"] == []
    assert loop.time() - t0 < 2
