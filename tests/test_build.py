"""The llama.cpp build that scripts/_setup.sh makes runs on every x86-64 host and keeps this host's speed."""
from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

BUILD = REPO_ROOT / "scripts" / "build_llama.sh"


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


def test_build_is_keyed_by_its_flags_and_this_cpu():
    """A build made with other flags (or on another CPU) is never picked up: the key covers all three."""
    text = BUILD.read_text()
    key_lines = text[text.index("key=\"$("):].split("\n")[:2]
    for part in ("$llama_req", "$LLAMA_CMAKE_ARGS", "$LLAMA_CFLAGS", "$FIXED_ARGS", "$cpu_flags"):
        assert part in "".join(key_lines), key_lines
    assert "-mno-amx-tile" in text


def test_llama_cpp_python_and_llama_cpps_tools_come_from_one_build():
    """llama.cpp is compiled once: the library llama-cpp-python loads is the build's, beside its tools."""
    import llama_cpp.llama_cpp as bindings

    folder = Path(subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=True,
                                 cwd=REPO_ROOT).stdout.strip())
    loaded = Path(bindings._lib._name)
    assert loaded.read_bytes() == (folder / "libllama.so").read_bytes()
    for tool in ("llama-completion", "llama-server"):
        assert (folder / tool).stat().st_mode & 0o111, tool


def test_the_backend_loads_llama_cpp_before_numpy():
    """A llama.cpp built with a newer GCC than the system's dies at its first model load when numpy loaded the
    system libstdc++ first (server/__init__.py). Whatever the backend imports, llama.cpp's libraries come first."""
    code = ("import sys, server.app, server.__main__; names = list(sys.modules); "
            "print(names.index('llama_cpp.llama_cpp') < names.index('numpy'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert done.stdout.strip() == "True"
