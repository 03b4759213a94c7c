"""Resource readings and thresholds: cgroup limits, the process tree, CPU rate, each threshold."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from scrapy.settings import Settings

from scrapy_resilience.model.entities import ResourceSnapshot, ResourceThreshold
from scrapy_resilience.monitor import resources
from scrapy_resilience.monitor.resources import (
    MB,
    Reading,
    TreeSample,
    cgroup_memory_files,
    check,
    cpu_percent,
    memory_available,
    parse_cgroup_limit,
)
from scrapy_resilience.settings import MonitorConfig

# Contents of real files, copied verbatim from a Docker container (cgroup v1,
# no limit set), a Debian 12 host session (cgroup v2) and `docker run -m 512m`.
V1_PROC_SELF_CGROUP = """9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/4607ca1d5c71930c85f1a747fc3adc7f
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""
V1_UNLIMITED = "9223372036854771712\n"
V1_LIMIT_512M = "536870912\n"
V2_PROC_SELF_CGROUP = "0::/user.slice/user-1000.slice/session-2.scope\n"
V2_UNLIMITED = "max\n"
V2_LIMIT_1G = "1073741824\n"


def test_parse_cgroup_limit_reads_real_values():
    """Numbers are limits; v2 "max" and v1's huge page-aligned number mean no limit."""
    assert parse_cgroup_limit(V1_LIMIT_512M) == 512 * MB
    assert parse_cgroup_limit(V2_LIMIT_1G) == 1024 * MB
    assert parse_cgroup_limit(V1_UNLIMITED) is None
    assert parse_cgroup_limit(V2_UNLIMITED) is None
    assert parse_cgroup_limit("") is None


def test_parse_cgroup_limit_rejects_garbage():
    """A file that is not a number or "max" raises ValueError (the caller skips it)."""
    with pytest.raises(ValueError):
        parse_cgroup_limit("lots\n")


def test_cgroup_candidates_for_v1_and_v2():
    """v1 looks under memory/<path>, v2 under <path>/memory.max, each then at the mount's top."""
    v1 = cgroup_memory_files(V1_PROC_SELF_CGROUP, "/cg")
    assert v1 == [
        Path("/cg/memory/process_api/4607ca1d5c71930c85f1a747fc3adc7f/memory.limit_in_bytes"),
        Path("/cg/memory/memory.limit_in_bytes"),
        Path("/cg/memory.max"),
    ]
    v2 = cgroup_memory_files(V2_PROC_SELF_CGROUP, "/cg")
    assert v2 == [Path("/cg/user.slice/user-1000.slice/session-2.scope/memory.max"), Path("/cg/memory.max")]


def _cgroup_tree(tmp_path: Path, listing: str, files: dict[str, str]) -> tuple[str, str]:
    for relative, content in files.items():
        target = tmp_path / "cgroup" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    (tmp_path / "proc_self_cgroup").write_text(listing)
    return str(tmp_path / "cgroup"), str(tmp_path / "proc_self_cgroup")


def test_memory_available_uses_a_v2_limit(tmp_path):
    """A v2 memory.max limit below physical memory is the memory available."""
    root, listing = _cgroup_tree(
        tmp_path, V2_PROC_SELF_CGROUP, {"user.slice/user-1000.slice/session-2.scope/memory.max": V2_LIMIT_1G}
    )
    assert memory_available(root, listing) == min(1024 * MB, psutil.virtual_memory().total)


def test_memory_available_uses_a_v1_limit_at_the_namespace_root(tmp_path):
    """In a container the v1 path is not visible: the file at the mount's top counts."""
    root, listing = _cgroup_tree(tmp_path, V1_PROC_SELF_CGROUP, {"memory/memory.limit_in_bytes": V1_LIMIT_512M})
    assert memory_available(root, listing) == 512 * MB


def test_memory_available_without_a_limit_is_physical_memory(tmp_path):
    """Unlimited cgroups (v1 and v2) and no cgroup files at all give physical memory."""
    physical = psutil.virtual_memory().total
    root, listing = _cgroup_tree(tmp_path, V1_PROC_SELF_CGROUP, {"memory/memory.limit_in_bytes": V1_UNLIMITED})
    assert memory_available(root, listing) == physical
    root, listing = _cgroup_tree(tmp_path / "v2", V2_PROC_SELF_CGROUP, {"memory.max": V2_UNLIMITED})
    assert memory_available(root, listing) == physical
    assert memory_available(str(tmp_path / "nowhere"), str(tmp_path / "missing")) == physical
    assert 0 < memory_available() <= physical  # this machine's real files


def _sample(t: float, cpu: dict[int, float]) -> TreeSample:
    return TreeSample(
        monotonic=t, memory_bytes=0, children_memory_bytes=0, cpu_seconds=cpu, connections=0, process_count=len(cpu)
    )


def test_cpu_percent_is_per_machine_and_ignores_ended_processes():
    """Two cores busy for 1 s of 1 s is 100%; a process that ended does not count negative."""
    before = _sample(10.0, {1: 5.0, 2: 3.0})
    after = _sample(11.0, {1: 6.0, 3: 1.0})  # pid 2 ended, pid 3 is new
    assert cpu_percent(before, after, cpus=2) == pytest.approx(100.0)
    assert cpu_percent(None, after, cpus=2) == 0.0
    assert cpu_percent(after, after, cpus=2) == 0.0


def test_sample_tree_counts_children_memory_and_processes():
    """A child process that holds memory is in the tree's count and in its children's share."""
    script = "import sys; data = b'x' * (64 * 1024 * 1024); sys.stdout.write('ready\\n'); sys.stdout.flush(); input()"
    argv = [sys.executable, "-c", script]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            sample = resources.sample_tree(os.getpid())
            assert child.pid in sample.cpu_seconds
            assert sample.process_count >= 2
            assert sample.children_memory_bytes >= 60 * MB
            assert sample.memory_bytes > sample.children_memory_bytes
        finally:
            child.kill()


def test_sampler_reading_is_a_model_snapshot(tmp_path):
    """A reading fills the data model's ResourceSnapshot and the free disk of the checkpoint directory."""
    sampler = resources.Sampler(os.getpid(), str(tmp_path / "not" / "yet" / "created"))
    reading = sampler.read_blocking()
    assert isinstance(reading.snapshot, ResourceSnapshot)
    assert reading.snapshot.memory_usage == round(reading.memory_mb) > 0
    assert reading.disk_free_mb > 0
    assert 0 < reading.memory_percent < 100
    assert 0 <= sampler.read_blocking().cpu_percent <= 100  # the second reading has a rate


def _reading(**overrides: float) -> Reading:
    values = {"memory_mb": 100.0, "memory_percent": 10.0, "browser_share": 0.0, "cpu_percent": 10.0}
    values.update({"disk_free_mb": 5000.0, "connections": 5})
    values.update(overrides)
    return Reading(snapshot=ResourceSnapshot(), **values)  # type: ignore[arg-type]


def test_thresholds_are_off_by_default():
    """With default settings no reading, however extreme, trips anything."""
    threshold = resources.threshold_from_config(MonitorConfig.from_settings(Settings()))
    extreme = _reading(memory_mb=1e9, memory_percent=100, cpu_percent=100, disk_free_mb=0, connections=10**6)
    assert check(threshold, extreme, [100, 100, 100]) == []


@pytest.mark.parametrize(
    ("field", "limit", "over", "under", "setting"),
    [
        ("memory_absolute", 500, {"memory_mb": 501}, {"memory_mb": 500}, "RESILIENCE_MEMORY_MB"),
        ("memory_percent", 50.0, {"memory_percent": 50.5}, {"memory_percent": 50}, "RESILIENCE_MEMORY_PERCENT"),
        ("disk_space", 1000, {"disk_free_mb": 999}, {"disk_free_mb": 1000}, "RESILIENCE_DISK_SPACE_MB"),
        ("network_connections", 50, {"connections": 51}, {"connections": 50}, "RESILIENCE_NETWORK_CONNECTIONS"),
    ],
)
def test_each_threshold_trips_only_past_its_limit(field, limit, over, under, setting):
    """Each threshold trips strictly past its limit and names its setting."""
    threshold = ResourceThreshold(name="t", **{field: limit})
    assert check(threshold, _reading(**under), []) == []
    (trip,) = check(threshold, _reading(**over), [])
    assert (trip.setting, trip.limit) == (setting, limit)


def test_cpu_trips_only_when_sustained():
    """One spike does not trip CPU; three readings in a row over the limit do."""
    threshold = ResourceThreshold(name="t", cpu_percent=80.0)
    assert check(threshold, _reading(), [10, 95]) == []
    assert check(threshold, _reading(), [95, 10, 95]) == []
    (trip,) = check(threshold, _reading(), [10, 95, 90, 85])
    assert trip.setting == "RESILIENCE_CPU_PERCENT" and trip.value == 85


def test_threshold_from_settings():
    """Settings become the data model's ResourceThreshold, 0 meaning off."""
    config = MonitorConfig.from_settings(Settings({"RESILIENCE_MEMORY_MB": 900, "RESILIENCE_CPU_PERCENT": 90}))
    threshold = resources.threshold_from_config(config)
    assert (threshold.memory_absolute, threshold.cpu_percent, threshold.disk_space) == (900, 90.0, None)


def test_sample_tree_counts_open_connections():
    """An open TCP connection of the tree is counted (both of its ends belong to this process here)."""
    before = resources.sample_tree(os.getpid()).connections
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()):
        accepted, _ = server.accept()
        with accepted:
            during = resources.sample_tree(os.getpid()).connections
    assert during >= before + 3  # listener, client end, accepted end


def test_sample_tree_counts_a_childs_connections():
    """A listening socket of a child process counts too (a tree is read in one system-wide pass)."""
    code = "import socket, sys; s = socket.create_server(('127.0.0.1', 0)); print('up', flush=True); sys.stdin.read()"
    before = resources.sample_tree(os.getpid())
    argv = [sys.executable, "-c", code]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        during = resources.sample_tree(os.getpid())
        assert child.stdin is not None
        child.stdin.close()
    assert during.process_count == before.process_count + 1 and during.connections >= before.connections + 1
