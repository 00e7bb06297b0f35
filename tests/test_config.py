"""Config: where state lives, this machine as a host, and TOML files that say what is wrong."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from apr_sched.config import (
    HttpConfig,
    SchedulerConfig,
    dump_config_toml,
    hosts_toml,
    load_config,
    local_host_spec,
    resolve_state_dir,
)
from apr_sched.errors import InvalidInput
from apr_sched.models import HostSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FIVE_HOSTS = """\
[scheduler]
state_dir = "/srv/apr_sched"
stop_grace_sec = 30

[http]
host = "0.0.0.0"
port = 5000
auth = "token"

[[hosts]]
host_id = "host-a"
total_slots = 8
total_cpu = 32
total_memory_gb = 128
executor_prefix = "ssh -o BatchMode=yes cad@10.0.0.11"
[hosts.labels]
tool = "innovus"
node = "A"

[[hosts]]
host_id = "host-b"
total_slots = 8
total_cpu = 32
total_memory_gb = 128.5
executor_prefix = "ssh -o BatchMode=yes cad@10.0.0.12"
labels = { tool = "innovus", node = "B" }

[[hosts]]
host_id = "host-c"
total_slots = 4
total_cpu = 0
total_memory_gb = 64
[hosts.labels]
tool = "icc2"

[[hosts]]
host_id = "host-d"
total_slots = 16
total_cpu = 64
total_memory_gb = 512

[[hosts]]
host_id = "host-e"
total_slots = 2
total_cpu = 8
total_memory_gb = 32
[hosts.labels]
tool = "openroad"
"""


def write_toml(tmp_path: Path, text: str, name: str = "hosts.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    return info.value


# --- resolve_state_dir ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("APR_SCHED_HOME", "EDX_TMP_BASE", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_state_dir_precedence(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert resolve_state_dir() == home / ".local/state/apr_sched"

    clean_env.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert resolve_state_dir() == tmp_path / "xdg/apr_sched"

    clean_env.setenv("EDX_TMP_BASE", str(tmp_path / "edx"))
    assert resolve_state_dir() == tmp_path / "edx/apr_sched"

    clean_env.setenv("APR_SCHED_HOME", str(tmp_path / "aprhome"))
    assert resolve_state_dir() == tmp_path / "aprhome"

    assert resolve_state_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_state_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_state_dir_expands_home_and_makes_absolute(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert resolve_state_dir("~/sched") == tmp_path / "home/sched"
    clean_env.chdir(tmp_path)
    assert resolve_state_dir("rel/../state") == tmp_path / "state"
    clean_env.setenv("APR_SCHED_HOME", "~/from-env")
    assert resolve_state_dir() == tmp_path / "home/from-env"
    assert resolve_state_dir().is_absolute()


def test_state_dir_ignores_empty_and_relative_xdg(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("APR_SCHED_HOME", "")
    clean_env.setenv("EDX_TMP_BASE", "")
    clean_env.setenv("XDG_STATE_HOME", "relative/xdg")
    assert resolve_state_dir() == tmp_path / "home/.local/state/apr_sched"


def test_state_dir_refuses_empty_explicit(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match="state dir must not be empty"):
        resolve_state_dir("")


# --- local_host_spec -----------------------------------------------------------------------


def test_local_host_spec_matches_this_machine() -> None:
    spec = local_host_spec()
    cpus = os.cpu_count()
    assert spec.host_id == "local"
    assert spec.total_slots == spec.total_cpu == cpus
    assert spec.executor_prefix is None and spec.labels == {}

    meminfo = Path("/proc/meminfo").read_text()
    mem_total_kib = int(next(ln for ln in meminfo.splitlines() if ln.startswith("MemTotal:"))
                        .split()[1])
    mem_total_gb = mem_total_kib / (1 << 20)
    # MemTotal leaves out memory the kernel reserved at boot: a few percent below RAM.
    assert mem_total_gb * 0.9 <= spec.total_memory_gb <= mem_total_gb * 1.1 + 0.1
    assert round(spec.total_memory_gb * 10) == spec.total_memory_gb * 10  # 0.1 GB steps


def test_local_host_spec_custom_and_invalid_id() -> None:
    assert local_host_spec("head01").host_id == "head01"
    with pytest.raises(InvalidInput, match="host_id"):
        local_host_spec("no spaces allowed")


# --- load_config ---------------------------------------------------------------------------


def test_load_realistic_five_hosts(tmp_path: Path) -> None:
    text = FIVE_HOSTS.replace("total_cpu = 0", "total_cpu = 16")
    config = load_config(write_toml(tmp_path, text))
    assert config.state_dir == "/srv/apr_sched"
    assert config.stop_grace_sec == 30.0
    assert config.http == HttpConfig(host="0.0.0.0", port=5000, auth="token")
    assert [h.host_id for h in config.hosts] == ["host-a", "host-b", "host-c", "host-d", "host-e"]
    a, b = config.hosts[0], config.hosts[1]
    assert a == HostSpec(
        host_id="host-a", total_slots=8, total_cpu=32, total_memory_gb=128.0,
        executor_prefix="ssh -o BatchMode=yes cad@10.0.0.11",
        labels={"tool": "innovus", "node": "A"},
    )
    assert b.total_memory_gb == 128.5 and b.labels == {"tool": "innovus", "node": "B"}
    assert config.hosts[3].labels == {} and config.hosts[3].executor_prefix is None


def test_load_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, ""))
    assert config == SchedulerConfig()
    assert config.state_dir is None and config.stop_grace_sec == 10.0 and config.hosts == []
    assert config.http == HttpConfig(host="127.0.0.1", port=5000, auth="token")


def test_load_accepts_pathlike_and_str(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[scheduler]\nstop_grace_sec = 2.5\n")
    assert load_config(path) == load_config(str(path))


def test_error_names_file_host_index_and_field(tmp_path: Path) -> None:
    path = write_toml(tmp_path, FIVE_HOSTS)
    error = load_error(path)
    assert error.message == (
        f"{path}: hosts[2].total_cpu: Input should be greater than or equal to 1"
    )
    assert error.details == [
        {"field": "hosts[2].total_cpu", "message": "Input should be greater than or equal to 1"}
    ]


def test_error_on_unknown_field(tmp_path: Path) -> None:
    path = write_toml(tmp_path, """\
        [[hosts]]
        host_id = "host-a"
        total_slots = 8
        total_cpus = 32
        total_memory_gb = 128
    """)
    message = load_error(path).message
    assert message.startswith(f"{path}: ")
    assert "hosts[0].total_cpus: unknown field" in message
    assert "hosts[0].total_cpu: Field required" in message


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ('[[hosts]]\nhost_id = "a"\ntotal_slots = "8"\ntotal_cpu = 1\ntotal_memory_gb = 1\n',
         "hosts[0].total_slots", "valid integer"),
        ('[[hosts]]\nhost_id = "a"\ntotal_slots = 8.0\ntotal_cpu = 1\ntotal_memory_gb = 1\n',
         "hosts[0].total_slots", "valid integer"),
        ('[[hosts]]\nhost_id = "a b"\ntotal_slots = 1\ntotal_cpu = 1\ntotal_memory_gb = 1\n',
         "hosts[0].host_id", "pattern"),
        ('[[hosts]]\nhost_id = "a"\ntotal_slots = 1\ntotal_cpu = 1\ntotal_memory_gb = 1\n'
         '[hosts.labels]\nnode = 3\n', "hosts[0].labels.node", "valid string"),
        ("[scheduler]\nstop_grace_sec = 0\n", "scheduler.stop_grace_sec", "greater than 0"),
        ("[scheduler]\nstop_grace_sec = 3601\n", "scheduler.stop_grace_sec", "less than or"),
        ('[scheduler]\nstop_grace_sec = "10"\n', "scheduler.stop_grace_sec", "valid number"),
        ("[scheduler]\nstop_grace_sec = true\n", "scheduler.stop_grace_sec", "valid number"),
        ('[scheduler]\nstate_dir = "relative/dir"\n', "scheduler.state_dir", "absolute"),
        ("[scheduler]\nstate_dirr = '/x'\n", "scheduler.state_dirr", "unknown field"),
        ("[http]\nport = 70000\n", "http.port", "less than or equal to 65535"),
        ('[http]\nauth = "basic"\n', "http.auth", "'token' or 'none'"),
        ("[http]\nhots = 'x'\n", "http.hots", "unknown field"),
        ("hosts = 3\n", "hosts", "valid list"),
        ("http = 3\n", "http", "valid dictionary"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, field: str, reason: str) -> None:
    path = write_toml(tmp_path, text)
    error = load_error(path)
    assert error.message.startswith(f"{path}: {field}: "), error.message
    assert reason in error.message
    assert any(d["field"] == field for d in error.details)


def test_error_on_duplicate_host_id(tmp_path: Path) -> None:
    host = 'host_id = "{}"\ntotal_slots = 1\ntotal_cpu = 1\ntotal_memory_gb = 1\n'
    text = "".join("[[hosts]]\n" + host.format(i) for i in ("a", "b", "c", "b"))
    path = write_toml(tmp_path, text)
    assert load_error(path).message == (
        f"{path}: hosts: duplicate host_id 'b' in hosts[1] and hosts[3]"
    )


def test_error_on_bad_toml_gives_line_and_column(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[scheduler]\nstop_grace_sec = 10\nstate_dir = "/x\n')
    message = load_error(path).message
    assert message.startswith(f"{path}: (toml): ")
    assert "line 3" in message and "column" in message


def test_error_on_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[scheduler]\nstate_dir = "/caf\xe9"\n')
    assert load_error(path).message.startswith(f"{path}: (toml): not UTF-8")


def test_error_on_unknown_table_and_top_level_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[schedular]\nstop_grace_sec = 1\n")
    message = load_error(path).message
    assert message.startswith(f"{path}: schedular: unknown table")
    assert "[scheduler]" in message

    # A key written above [scheduler] lands at the top level: named, not ignored.
    path = write_toml(tmp_path, 'state_dir = "/x"\n[scheduler]\n')
    assert load_error(path).message.startswith(f"{path}: state_dir: unknown table or key")


def test_error_on_table_nested_in_scheduler(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[scheduler.http]\nport = 1\n")
    assert load_error(path).message.startswith(f"{path}: scheduler.http: unknown field")


def test_error_on_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    error = load_error(path)
    assert error.message == f"{path}: (file): no such file"


def test_error_on_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path).message.startswith(f"{tmp_path}: (file): ")


def test_many_errors_are_summarised(tmp_path: Path) -> None:
    text = "".join(f'[[hosts]]\nhost_id = "h{i}"\n' for i in range(3))  # 3 fields missing each
    error = load_error(write_toml(tmp_path, text))
    assert error.message.endswith("; and 4 more")
    assert len(error.details) == 9


# --- dump and round trip ---------------------------------------------------------------------


def tricky_config() -> SchedulerConfig:
    return SchedulerConfig(
        state_dir="~/apr state/\"quoted\"",
        stop_grace_sec=2.5,
        http=HttpConfig(host="::1", port=0, auth="none"),
        hosts=[
            HostSpec(
                host_id="host-a", total_slots=8, total_cpu=32, total_memory_gb=128,
                executor_prefix="ssh -o BatchMode=yes -o 'ProxyJump \"bastion\"' cad@10.0.0.11",
                labels={"tool": "innovus", "a.b": 'x"y', "space key": "", "ünï": "cödé\\"},
            ),
            HostSpec(host_id="h.2_x-y", total_slots=1, total_cpu=1, total_memory_gb=0.1),
        ],
    )


def test_dump_load_round_trip(tmp_path: Path) -> None:
    config = tricky_config()
    text = dump_config_toml(config)
    assert load_config(write_toml(tmp_path, text, "dumped.toml")) == config
    assert "None" not in text and "executor_prefix" in text


def test_dump_omits_none_and_round_trips_defaults(tmp_path: Path) -> None:
    text = dump_config_toml(SchedulerConfig())
    assert "state_dir" not in text and "hosts" not in text
    assert load_config(write_toml(tmp_path, text)) == SchedulerConfig()


def test_hosts_toml_round_trip(tmp_path: Path) -> None:
    hosts = tricky_config().hosts
    text = hosts_toml(hosts)
    assert "[scheduler]" not in text and "[http]" not in text
    assert load_config(write_toml(tmp_path, text)).hosts == hosts
    assert load_config(write_toml(tmp_path, hosts_toml([]))).hosts == []


def test_hosts_toml_refuses_duplicates() -> None:
    host = local_host_spec("same")
    with pytest.raises(InvalidInput, match="duplicate host_id 'same'"):
        hosts_toml([host, host])


# --- examples/hosts.toml ---------------------------------------------------------------------


def test_example_hosts_file_parses(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "hosts.toml")
    assert [h.host_id for h in config.hosts] == ["host-a", "host-b", "host-c", "host-d", "host-e"]
    assert config.hosts[0] == HostSpec(
        host_id="host-a", total_slots=8, total_cpu=32, total_memory_gb=128,
        executor_prefix="ssh -o BatchMode=yes cad@10.0.0.11",
        labels={"tool": "innovus", "node": "A"},
    )
    assert [h.executor_prefix for h in config.hosts] == [
        f"ssh -o BatchMode=yes cad@10.0.0.{n}" for n in range(11, 16)
    ]
    assert {h.labels["tool"] for h in config.hosts} == {"innovus", "icc2", "openroad"}
    assert max(h.total_memory_gb for h in config.hosts) == 512
    assert config.state_dir is None and config.http == HttpConfig()  # examples are comments
    # And it survives being written back out.
    assert load_config(write_toml(tmp_path, dump_config_toml(config))) == config
