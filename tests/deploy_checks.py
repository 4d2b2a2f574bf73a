"""Reading and validating the deploy files for the test_deploy* modules: the tool runners, kubernetes-validate,
YAML files and their broken copies, and what a pod spec holds (containers, env, hardening, label selectors)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT

K8S_DIR = REPO_ROOT / "k8s"


# ---- tools -------------------------------------------------------------------------------------------------

def tool(name: str) -> str:
    """Path of a console script of the test environment; fails the test when it is not installed."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install requirements-dev.txt (scripts/test.sh does)")
    return found


def run_tool(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def kubernetes_validate_problems(path: Path) -> list[str]:
    """`kubernetes-validate --strict`; a resource without a schema (unknown kind or apiVersion) is a problem too."""
    result = run_tool([tool("kubernetes-validate"), "--strict", str(path)])
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    problems = [line for line in lines if not line.startswith("INFO")]
    if result.returncode != 0:
        problems.append(f"kubernetes-validate exited {result.returncode}")
    if not any(" passed " in line for line in lines):
        problems.append("no resource validated")
    return problems


# ---- files -------------------------------------------------------------------------------------------------

def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def write_yaml(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def break_text(source: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of `source` in tmp_path with the first `old` replaced by `new` (which must be there)."""
    text = source.read_text()
    assert old in text, f"{old!r} not in {source}: update the broken-copy test"
    target = tmp_path / source.name
    target.write_text(text.replace(old, new, 1))
    return target


# ---- pods --------------------------------------------------------------------------------------------------

def pod_containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def proxy_container(pod: dict) -> dict | None:
    """The container that serves the proxy on 8080 (in the sidecar example, a native sidecar init container)."""
    for container in pod_containers(pod):
        if any(port.get("containerPort") == 8080 for port in container.get("ports", [])):
            return container
    return None


def env_value(container: dict, name: str) -> str | None:
    return next((e.get("value") for e in container.get("env", []) if e.get("name") == name), None)


def volume_kinds(pod: dict) -> dict[str, set[str]]:
    return {v["name"]: set(v) - {"name"} for v in pod.get("volumes", [])}


def pod_security_problems(pod: dict) -> list[str]:
    problems = []
    sc = pod.get("securityContext", {})
    expected = {"runAsNonRoot": True, "runAsUser": 1000, "fsGroupChangePolicy": "OnRootMismatch"}
    problems += [f"pod securityContext.{k} is not {v!r}" for k, v in expected.items() if sc.get(k) != v]
    if not isinstance(sc.get("fsGroup"), int):
        problems.append("pod securityContext.fsGroup missing")
    if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    volumes = volume_kinds(pod)
    for c in pod_containers(pod):
        csc = c.get("securityContext", {})
        if csc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c['name']}: readOnlyRootFilesystem is not true")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in csc.get("capabilities", {}).get("drop", []):
            problems.append(f"{c['name']}: capabilities are not all dropped")
        requests = c.get("resources", {}).get("requests", {})
        if not {"cpu", "memory"} <= set(requests) or "memory" not in c.get("resources", {}).get("limits", {}):
            problems.append(f"{c['name']}: resources need cpu/memory requests and a memory limit")
        tmp = [m["name"] for m in c.get("volumeMounts", []) if m.get("mountPath") == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0], set()):
            problems.append(f"{c['name']}: /tmp is not an emptyDir")
    return problems


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects pods with `labels`; {} selects all."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, values = expr["key"], expr.get("values", [])
        held = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[expr["operator"]]
        if not held:
            return False
    return True
