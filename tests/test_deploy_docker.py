"""Offline checks of docker/Dockerfile and docker/Dockerfile.cuda: hadolint, and what the images promise.

The images are never built here (no Docker engine). hadolint runs with .hadolint.yaml at the `style` threshold,
so any finding fails unless it is ignored there or inline with a reason. Each check is also run on a copy
broken in one specific way.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from tests.deploy_checks import break_text, run_tool, tool

DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILES = [DOCKER_DIR / "Dockerfile", DOCKER_DIR / "Dockerfile.cuda"]
COMPILERS = re.compile(r"build-essential|\bgcc\b|\bg\+\+|\bclang\b|\bcmake\b|cuda-nvcc|-devel-")


def hadolint_problems(path: Path) -> list[str]:
    result = run_tool([tool("hadolint"), "--config", str(REPO_ROOT / ".hadolint.yaml"),
                       "--failure-threshold", "style", "--no-color", str(path)])
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not problems:
        problems.append(f"hadolint exited {result.returncode}")
    return problems


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _resolve_args(pairs: list[tuple[str, str]], value: str) -> str:
    """Substitute ARG defaults into `value` (enough for FROM lines and CMAKE_ARGS)."""
    defaults = {}
    for word, rest in pairs:
        if word == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            defaults[name] = default.strip('"')
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), value)


def dockerfile_problems(path: Path, cuda: bool) -> list[str]:
    """Multi-stage, no compiler at run time, non-root under any UID, HOME=/tmp, start.sh as entrypoint."""
    pairs = _instructions(path.read_text())
    starts = [i for i, (word, _) in enumerate(pairs) if word == "FROM"]
    if len(starts) < 2:
        return ["not multi-stage"]
    final = pairs[starts[-1]:]
    problems = []
    final_text = " ".join(_resolve_args(pairs, f"{w} {r}") for w, r in final if w in ("FROM", "RUN"))
    if COMPILERS.search(final_text):
        problems.append(f"the runtime stage carries a compiler: {COMPILERS.search(final_text).group(0)}")
    if not any(w == "COPY" and r.startswith("--from=") for w, r in final):
        problems.append("the runtime stage does not copy the built environment from the build stage")
    users = [r for w, r in final if w == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        problems.append("the image does not end on a numeric non-root USER")
    env_text = " ".join(r for w, r in final if w == "ENV")
    for needed in ("HOME=/tmp", "MODELS_DIR=/models"):
        if needed not in env_text:
            problems.append(f"ENV lacks {needed}")
    if not re.search(r"chmod (1777|0?777) /models", final_text):
        problems.append("/models is not writable by an arbitrary UID")
    if not any(w == "ENTRYPOINT" and "start.sh" in r for w, r in final):
        problems.append("ENTRYPOINT is not docker/start.sh")
    if cuda:
        problems += _cuda_problems(pairs, final_text)
    return problems


def _cuda_problems(pairs: list[tuple[str, str]], final_text: str) -> list[str]:
    env_text = " ".join(_resolve_args(pairs, r) for w, r in pairs if w == "ENV")
    cmake_args = " ".join(re.findall(r'CMAKE_ARGS="([^"]*)"', env_text))
    problems = [] if "-DGGML_CUDA=on" in cmake_args else ["CMAKE_ARGS lacks -DGGML_CUDA=on"]
    archs = re.search(r"-DCMAKE_CUDA_ARCHITECTURES=([\d;]+)", cmake_args)
    if archs is None or not {"70", "75"} <= set(archs.group(1).split(";")):
        problems.append("CUDA architectures must name 70 (V100) and 75 (T4) explicitly")
    if "lib64/stubs" not in cmake_args:
        problems.append("the build does not link against the CUDA driver stubs")
    if "-runtime-" not in final_text:
        problems.append("the runtime stage is not a CUDA runtime image")
    return problems


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(path):
    assert hadolint_problems(path) == []


@pytest.mark.parametrize("old, new", [
    ("build-essential=12.9 \\", "build-essential curl \\"),  # DL3008: unpinned apt-get install
    ("USER 10001:10001\n", "USER root\n"),                    # DL3002: last USER is root
    ("-r /tmp/requirements.txt\n", "-r /tmp/requirements.txt \\\n && pip install --no-cache-dir flask\n"),  # DL3013
    ("pip install --no-cache-dir -r", "pip install -r"),           # DL3042: pip cache kept in the layer
    (" && rm -rf /var/lib/apt/lists/*\n", "\n"),              # DL3009: apt lists left in the layer
], ids=["unpinned-apt", "user-root", "unpinned-pip", "pip-cache", "apt-lists-kept"])
def test_hadolint_rejects_broken_dockerfile(tmp_path, old, new):
    broken = break_text(DOCKER_DIR / "Dockerfile", tmp_path, old, new)
    assert hadolint_problems(broken) != []


def unexplained_ignores(text: str) -> list[str]:
    """hadolint ignores without a reason: inline `# hadolint ignore=DL...` with no text after it and no comment
    line above it, or an entry of .hadolint.yaml's `ignored:` list without a `# reason` on its line."""
    lines = text.splitlines()
    problems = []
    for i, line in enumerate(lines):
        inline = re.search(r"#\s*hadolint ignore=[\w,]+(.*)", line)
        if inline:
            above = lines[i - 1].strip() if i else ""
            if not inline.group(1).strip(" -:") and not (above.startswith("#") and "hadolint" not in above):
                problems.append(line.strip())
        elif re.match(r"\s*-\s*(DL|SC)\d{4}\s*(#\s*\S.*)?$", line) and "#" not in line:
            problems.append(line.strip())
    return problems


@pytest.mark.parametrize("path", [*DOCKERFILES, REPO_ROOT / ".hadolint.yaml"], ids=lambda p: p.name)
def test_hadolint_ignores_have_reasons(path):
    assert unexplained_ignores(path.read_text()) == []


@pytest.mark.parametrize("text", [
    "ignored:\n  - DL3008\n",
    "# hadolint ignore=DL3008\nRUN apt-get install -y curl\n",
], ids=["config-without-reason", "inline-without-reason"])
def test_ignore_check_rejects_ignore_without_reason(text):
    assert unexplained_ignores(text) != []
    explained = text.replace("DL3008", "DL3008  # the package is pinned by the base image's snapshot")
    assert unexplained_ignores(explained) == []


@pytest.mark.parametrize("path, cuda", [(DOCKERFILES[0], False), (DOCKERFILES[1], True)],
                         ids=["cpu", "cuda"])
def test_dockerfile_builds_a_hardened_multistage_image(path, cuda):
    assert dockerfile_problems(path, cuda) == []


@pytest.mark.parametrize("name, old, new", [
    ("Dockerfile", "libgomp1=12.2.0-14+deb12u1 \\", "libgomp1=12.2.0-14+deb12u1 build-essential=12.9 \\"),
    ("Dockerfile", "USER 10001:10001\n", "USER app\n"),
    ("Dockerfile", "    HOME=/tmp \\\n", ""),
    ("Dockerfile", "chmod 1777 /models", "chmod 0755 /models"),
    ("Dockerfile.cuda", 'ARG CUDA_ARCHITECTURES="70;75;80;86;89;90"', 'ARG CUDA_ARCHITECTURES="80;86;89;90"'),
    ("Dockerfile.cuda", "-DCMAKE_LIBRARY_PATH=/usr/local/cuda/lib64/stubs ", ""),
    ("Dockerfile.cuda", "-runtime-ubuntu${UBUNTU_VERSION} AS runtime", "-devel-ubuntu${UBUNTU_VERSION} AS runtime"),
], ids=["compiler-at-runtime", "named-user", "no-home", "models-not-writable", "no-v100-t4", "no-stubs",
        "devel-runtime"])
def test_dockerfile_check_rejects_broken_copy(tmp_path, name, old, new):
    broken = break_text(DOCKER_DIR / name, tmp_path, old, new)
    assert dockerfile_problems(broken, cuda=name.endswith(".cuda")) != []


def test_single_stage_dockerfile_is_rejected(tmp_path):
    text = (DOCKER_DIR / "Dockerfile").read_text()
    single = text[text.index("FROM ${PYTHON_IMAGE} AS runtime"):]
    (tmp_path / "Dockerfile").write_text("ARG PYTHON_IMAGE=python:3.11-slim-bookworm\n" + single)
    assert dockerfile_problems(tmp_path / "Dockerfile", cuda=False) == ["not multi-stage"]


def test_cpu_image_builds_a_portable_llama_cpp_without_amx():
    env_text = " ".join(r for w, r in _instructions((DOCKER_DIR / "Dockerfile").read_text()) if w == "ENV")
    cmake_args = " ".join(re.findall(r'CMAKE_ARGS="([^"]*)"', env_text)).split()
    assert "-DGGML_NATIVE=OFF" in cmake_args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF"} <= set(cmake_args)
    assert not any("ALL_VARIANTS=ON" in arg or "AMX_TILE=ON" in arg for arg in cmake_args)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_carry_every_script_start_sh_sources(path):
    sourced = re.findall(r"^source (docker/\S+)", (DOCKER_DIR / "start.sh").read_text(), re.MULTILINE)
    copies = " ".join(r for w, r in _instructions(path.read_text()) if w == "COPY")
    assert sourced and all(script in copies for script in sourced), (sourced, copies)
