"""The llama.cpp build that scripts/_setup.sh makes runs on every x86-64 host and keeps this host's speed."""
from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

SETUP = REPO_ROOT / "scripts" / "_setup.sh"


def system_info() -> dict[str, str]:
    """llama.cpp's own report of what it was compiled with, from a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
                         capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+) = (\d)", out))


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 instruction sets only")
def test_backend_build_has_no_amx_and_keeps_the_hosts_vector_extensions():
    info, flags = system_info(), cpu_flags()
    assert info.get("AMX_INT8", "0") == "0", info
    if "avx2" in flags:
        assert info.get("AVX2") == "1", info
    if "avx512f" in flags:
        assert info.get("AVX512") == "1", info


def test_setup_keys_the_cached_build_by_its_flags_and_this_cpu():
    """A wheel built with other flags (or on another CPU) is never picked up: the key covers all three."""
    text = SETUP.read_text()
    key_line = next(line for line in text.splitlines() if line.startswith("build_key="))
    for part in ("$llama_req", "$LLAMA_CMAKE_ARGS", "$LLAMA_CFLAGS", "$cpu_flags"):
        assert part in key_line, key_line
    assert "--no-cache-dir" in text and "--force-reinstall" in text
    assert "-mno-amx-tile" in text


def test_the_backend_loads_llama_cpp_before_numpy():
    """A llama.cpp built with a newer GCC than the system's dies at its first model load when numpy loaded the
    system libstdc++ first (server/__init__.py). Whatever the backend imports, llama.cpp's libraries come first."""
    code = ("import sys, server.app, server.__main__; names = list(sys.modules); "
            "print(names.index('llama_cpp.llama_cpp') < names.index('numpy'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert done.stdout.strip() == "True"
