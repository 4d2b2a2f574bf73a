"""How many threads llama.cpp gets by default: llama.cpp's own rule (one a physical core), within what this
process may use (its affinity mask, which cgroup cpusets narrow, and the container's cgroup CPU quota)."""
from __future__ import annotations

import math
import os
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def default_threads(sys_cpu: Path = SYS_CPU, cpu_max: Path = CPU_MAX) -> int:
    """N_THREADS' default: the physical cores among the CPUs this process may use, bounded by the cgroup CPU
    quota, at least one.

    llama.cpp (common/common.cpp, cpu_get_num_math) and llama-server use one thread a physical core: a
    hyper-thread sibling shares its core's vector units and only adds a thread to every barrier. On an idle
    2-core host this decodes 1.8x faster than one thread (docs/operations.md, Benchmarks); on a host where
    other busy processes share the cores, fewer threads can be faster (set N_THREADS).
    """
    allowed = usable_cpus()
    cores = physical_cores(allowed, sys_cpu)
    quota = cpu_quota(cpu_max)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def usable_cpus() -> set[int]:
    """The CPU numbers this process may run on (its affinity mask)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sys_cpu: Path = SYS_CPU) -> int:
    """How many physical cores `cpus` span (hyper-thread siblings count once); len(cpus) where the topology
    cannot be read."""
    cores = set()
    for cpu in cpus:
        try:
            siblings = (sys_cpu / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add(siblings)
    return len(cores)


def cpu_quota(path: Path = CPU_MAX) -> float | None:
    """CPUs the cgroup may use (quota / period), or None without a limit."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None
