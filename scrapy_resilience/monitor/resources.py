"""Resource readings of the crawl's process tree, and the thresholds judged on them.

Scrapy's MemoryUsage reads the peak RSS of the main process only: it never goes
down and it ignores the browsers scrapy-playwright starts as child processes.
Here one reading covers the whole tree (the Scrapy process and every
descendant) with its *current* memory, as PSS where Linux reports it so that
pages shared between Chromium processes count once. Reading a tree with a
browser takes tens of milliseconds of system calls, so ``Sampler.read`` runs the
blocking part in a thread and never holds up the reactor.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import attrs
import psutil
from twisted.internet.threads import deferToThread

from scrapy_resilience.model.entities import ResourceSnapshot, ResourceThreshold
from scrapy_resilience.settings import MonitorConfig

MB = 1024 * 1024
# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit number.
_CGROUP_V1_UNLIMITED = 2**62
# CPU trips only when this many readings in a row are over the limit: one
# spike (a big page parsed, a browser starting) is not a runaway crawl.
CPU_SUSTAINED_READINGS = 3


def parse_cgroup_limit(text: str) -> int | None:
    """The byte limit in a cgroup ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) file.

    ``None`` means no limit: v2 writes ``max``, v1 a number near 2**63.
    """
    value = text.strip()
    if not value or value == "max":
        return None
    limit = int(value)
    return None if limit >= _CGROUP_V1_UNLIMITED else limit


def cgroup_memory_files(proc_self_cgroup: str, root: str = "/sys/fs/cgroup") -> list[Path]:
    """Candidate limit files for this process, most specific first, from ``/proc/self/cgroup``.

    Lines are ``ID:CONTROLLERS:PATH``; v2 has the single line ``0::PATH``, v1 a
    line whose controllers include ``memory``. Inside a container the path is
    often not visible under ``root`` (the namespace's root is the cgroup), so
    the file at the mount's top is a candidate too.
    """
    candidates: list[Path] = []
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        relative = path.lstrip("/")
        if controllers == "":
            candidates += [Path(root, relative, "memory.max"), Path(root, "memory.max")]
        elif "memory" in controllers.split(","):
            candidates += [
                Path(root, "memory", relative, "memory.limit_in_bytes"),
                Path(root, "memory", "memory.limit_in_bytes"),
            ]
    return list(dict.fromkeys(candidates))


def memory_available(root: str = "/sys/fs/cgroup", listing: str = "/proc/self/cgroup") -> int:
    """Bytes of memory this process may use: the cgroup limit when one is set, else physical memory."""
    physical = psutil.virtual_memory().total
    try:
        text = Path(listing).read_text()
    except OSError:
        return physical
    for candidate in cgroup_memory_files(text, root):
        try:
            limit = parse_cgroup_limit(candidate.read_text())
        except (OSError, ValueError):
            continue
        if limit is not None:
            return min(limit, physical)
    return physical


def existing_ancestor(path: str | None) -> str:
    """The nearest existing directory of ``path`` (the checkpoint directory may not exist yet)."""
    current = Path(path or os.getcwd()).absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return str(current)


@attrs.frozen(kw_only=True)
class TreeSample:
    """One raw reading of the process tree; two of them give the CPU rate."""

    monotonic: float
    memory_bytes: int
    children_memory_bytes: int  # descendants only: browsers, drivers, tools
    cpu_seconds: dict[int, float]  # cumulative user+system time per pid
    connections: int
    process_count: int


def _memory_of(proc: psutil.Process) -> int:
    try:
        # PSS splits each shared page between the processes that map it.
        return int(proc.memory_full_info().pss)
    except (psutil.AccessDenied, AttributeError):
        return int(proc.memory_info().rss)


def _connections(pids: set[int], procs: list[psutil.Process]) -> int:
    """Open inet connections of the tree's processes.

    A system-wide pass reads the kernel's socket tables once but also every
    process's file descriptors on the machine; asking a process reads the
    tables again per process. For a tree (Chromium) the pass is cheaper
    (measured: 16 ms against 125 ms, see benchmarks/bench_monitor.py); for a
    crawl without a browser, one process, asking it is (0.1 ms against 23 ms
    on a machine running 115 processes: 1.5 % of a fast crawl's CPU).
    """
    if len(procs) > 1:
        try:
            return sum(1 for conn in psutil.net_connections(kind="inet") if conn.pid in pids)
        except psutil.AccessDenied:  # some systems only show one's own processes one at a time
            pass
    total = 0
    for proc in procs:
        try:
            total += len(proc.net_connections(kind="inet"))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return total


def sample_tree(pid: int) -> TreeSample:
    """Read memory, CPU time, connections and size of the tree rooted at ``pid`` (blocking)."""
    root = psutil.Process(pid)
    memory = children_memory = 0
    cpu: dict[int, float] = {}
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        try:
            with proc.oneshot():
                used = _memory_of(proc)
                times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # a process that ended while the tree was read
        memory += used
        if proc.pid != pid:
            children_memory += used
        cpu[proc.pid] = times.user + times.system
    return TreeSample(
        monotonic=time.monotonic(),
        memory_bytes=memory,
        children_memory_bytes=children_memory,
        cpu_seconds=cpu,
        connections=_connections(set(cpu), procs),
        process_count=len(cpu),
    )


def cpu_percent(previous: TreeSample | None, current: TreeSample, cpus: int) -> float:
    """CPU used by the tree between two samples, as a percentage of the whole machine.

    Per pid, so that a process that ended does not make the total go down; a
    process new since ``previous`` counts with all its time (it started within
    the interval).
    """
    if previous is None or current.monotonic <= previous.monotonic:
        return 0.0
    used = sum(max(0.0, seconds - previous.cpu_seconds.get(pid, 0.0)) for pid, seconds in current.cpu_seconds.items())
    elapsed = current.monotonic - previous.monotonic
    return min(100.0, 100.0 * used / (elapsed * max(1, cpus)))


@attrs.frozen(kw_only=True)
class Reading:
    """What the monitor judges: the data model's snapshot plus the figures thresholds compare."""

    snapshot: ResourceSnapshot
    memory_mb: float
    memory_percent: float
    browser_share: float  # fraction of the memory held by child processes
    cpu_percent: float
    disk_free_mb: float
    connections: int


def make_reading(previous: TreeSample | None, current: TreeSample, disk_path: str) -> Reading:
    """Combine a tree sample with the memory limit and the disk (blocking: statvfs, cgroup files)."""
    disk = shutil.disk_usage(existing_ancestor(disk_path))
    cpu = cpu_percent(previous, current, psutil.cpu_count() or 1)
    memory_mb = current.memory_bytes / MB
    return Reading(
        snapshot=ResourceSnapshot(
            memory_usage=round(memory_mb),
            cpu_usage=round(cpu, 1),
            disk_usage=round(disk.used / MB),
            network_connections=current.connections,
            process_count=current.process_count,
        ),
        memory_mb=memory_mb,
        memory_percent=100.0 * current.memory_bytes / memory_available(),
        browser_share=current.children_memory_bytes / current.memory_bytes if current.memory_bytes else 0.0,
        cpu_percent=cpu,
        disk_free_mb=disk.free / MB,
        connections=current.connections,
    )


class Sampler:
    """Takes readings of one process tree; keeps the previous sample for the CPU rate."""

    def __init__(self, pid: int, disk_path: str | None) -> None:
        self.pid = pid
        self.disk_path = existing_ancestor(disk_path)
        self._previous: TreeSample | None = None

    def read_blocking(self) -> Reading:
        current = sample_tree(self.pid)
        reading = make_reading(self._previous, current, self.disk_path)
        self._previous = current
        return reading

    def read(self):  # -> Deferred[Reading]
        """A reading taken in a thread: psutil over a browser's tree must not block the reactor."""
        return deferToThread(self.read_blocking)


def threshold_from_config(config: MonitorConfig) -> ResourceThreshold:
    """The data model's ResourceThreshold of the settings (0, meaning off, becomes ``None``)."""
    return ResourceThreshold(
        name="settings",
        memory_percent=config.memory_percent or None,
        memory_absolute=config.memory_mb or None,
        cpu_percent=config.cpu_percent or None,
        browser_lifetime=config.browser_lifetime or None,
        disk_space=config.disk_space_mb or None,
        network_connections=config.network_connections or None,
    )


@attrs.frozen
class Trip:
    """A crossed threshold: the setting that names it, the measured value and the limit."""

    setting: str
    value: float
    limit: float


def check(threshold: ResourceThreshold, reading: Reading, cpu_history: Iterable[float]) -> list[Trip]:
    """Every threshold ``reading`` crosses; CPU only when the last readings were all over."""
    trips: list[Trip] = []
    if threshold.memory_absolute is not None and reading.memory_mb > threshold.memory_absolute:
        trips.append(Trip("RESILIENCE_MEMORY_MB", reading.memory_mb, threshold.memory_absolute))
    if threshold.memory_percent is not None and reading.memory_percent > threshold.memory_percent:
        trips.append(Trip("RESILIENCE_MEMORY_PERCENT", reading.memory_percent, threshold.memory_percent))
    if threshold.cpu_percent is not None:
        recent = list(cpu_history)[-CPU_SUSTAINED_READINGS:]
        if len(recent) == CPU_SUSTAINED_READINGS and min(recent) > threshold.cpu_percent:
            trips.append(Trip("RESILIENCE_CPU_PERCENT", min(recent), threshold.cpu_percent))
    if threshold.disk_space is not None and reading.disk_free_mb < threshold.disk_space:
        trips.append(Trip("RESILIENCE_DISK_SPACE_MB", reading.disk_free_mb, threshold.disk_space))
    if threshold.network_connections is not None and reading.connections > threshold.network_connections:
        trips.append(Trip("RESILIENCE_NETWORK_CONNECTIONS", reading.connections, threshold.network_connections))
    return trips
