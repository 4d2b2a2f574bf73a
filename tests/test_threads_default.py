"""N_THREADS' default: llama.cpp's rule (physical cores) within the affinity mask and the cgroup CPU quota."""
from __future__ import annotations

from pathlib import Path

from server.residency import cpus


def _topology(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "thread_siblings_list").write_text(text + "\n")
    return root


def test_hyperthread_siblings_count_once(tmp_path):
    topology = _topology(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert cpus.physical_cores({0, 1, 2, 3}, topology) == 2
    assert cpus.physical_cores({0, 2}, topology) == 1  # an affinity mask of one core's two threads


def test_cores_without_siblings_each_count(tmp_path):
    topology = _topology(tmp_path, {0: "0", 1: "1"})
    assert cpus.physical_cores({0, 1}, topology) == 2


def test_unreadable_topology_counts_the_cpus(tmp_path):
    assert cpus.physical_cores({0, 1, 5}, tmp_path / "absent") == 3


def test_quota_bounds_the_default(tmp_path, monkeypatch):
    topology = _topology(tmp_path / "sys", {n: str(n) for n in range(8)})
    monkeypatch.setattr(cpus, "usable_cpus", lambda: set(range(8)))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cpus.default_threads(topology, quota) == 2  # 1.5 CPUs: rounded up to two threads
    quota.write_text("max 100000\n")
    assert cpus.default_threads(topology, quota) == 8
    quota.write_text("10000 100000\n")
    assert cpus.default_threads(topology, quota) == 1  # never below one


def test_default_on_this_host_is_at_least_one():
    assert 1 <= cpus.default_threads() <= len(cpus.usable_cpus())
