"""The example batch: reproducible, valid, and every job fits a host of examples/hosts.toml."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from apr_sched.config import load_config
from apr_sched.models import JobSpec
from apr_sched.placement import HostCapacity

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GENERATOR = EXAMPLES / "gen_batch_jobs.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_batch_jobs", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_generator(*args: str) -> bytes:
    result = subprocess.run([sys.executable, str(GENERATOR), *args], capture_output=True,
                            timeout=30, check=True)
    return result.stdout


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    out = tmp_path / "batch_jobs_100.json"
    subprocess.run([sys.executable, str(GENERATOR), "--count", "100", "--output", str(out),
                    "--seed", "7"], check=True, capture_output=True, timeout=30)
    assert out.read_bytes() == run_generator("--count", "100", "--seed", "7")
    assert out.read_bytes() != run_generator("--count", "100", "--seed", "8")
    assert len(json.loads(out.read_bytes())["jobs"]) == 100


def test_committed_batch_is_the_default_output(gen: ModuleType) -> None:
    committed = (EXAMPLES / "batch_jobs.json").read_text(encoding="utf-8")
    assert committed == gen.render(gen.generate())
    assert committed.encode() == run_generator()


@pytest.mark.parametrize("seed", [None, 7, 12345])
def test_jobs_are_valid_specs_that_fit_an_example_host(gen: ModuleType, seed: int | None
                                                       ) -> None:
    jobs: list[dict[str, Any]] = (
        json.loads((EXAMPLES / "batch_jobs.json").read_text())["jobs"] if seed is None
        else gen.generate(300, seed)
    )
    hosts = [HostCapacity.from_spec(h) for h in load_config(EXAMPLES / "hosts.toml").hosts]
    assert len(hosts) == 5
    for index, raw in enumerate(jobs):
        spec = JobSpec.model_validate(raw)  # strict: no coercion, no unknown fields
        fits = [h.host_id for h in hosts if h.could_ever_fit(spec.resource_request)]
        assert fits, f"job {index} ({spec.resource_request.describe()}) fits no example host"


def test_batch_is_varied() -> None:
    jobs = [JobSpec.model_validate(raw) for raw in
            json.loads((EXAMPLES / "batch_jobs.json").read_text())["jobs"]]
    assert len(jobs) == 100
    assert {j.project for j in jobs} == {"P1", "P2", "P3", "P4"}
    assert len({j.design for j in jobs}) >= 6
    assert len({j.priority for j in jobs}) >= 6
    assert len({j.owner for j in jobs}) >= 3
    assert {j.retry_limit for j in jobs} == {0, 1, 2}
    assert {j.resource_request.host_labels["tool"] for j in jobs} == {
        "innovus", "icc2", "openroad"}
    assert any(j.resource_request.memory_gb > 128 for j in jobs)  # needs the big host
    assert all(j.workdir == "/tmp" and j.timeout_sec for j in jobs)
    assert len({j.name for j in jobs}) == 100
