"""Offline checks of the deploy files: Kubernetes schemas, YAML lint, compose, docs.

Every check runs on the real file and on a copy broken in one specific way, so each test also shows that
its check can fail. The tools come from the test environment (requirements-dev.txt); a missing tool fails
the test, it is never skipped. The Deployments' policy and the kustomizations: test_deploy_k8s.py;
Dockerfiles: test_deploy_docker.py; the AI Core template: test_deploy_aicore.py; gunicorn:
test_deploy_gunicorn.py; docker/start.sh: test_deploy_start.py. The helpers they share: tests/deploy_checks.py.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy_checks import K8S_DIR, break_text, kubernetes_validate_problems, load_all, rel, run_tool, tool
from tests.helpers import REPO_ROOT

YAMLLINT_CONFIG = REPO_ROOT / ".yamllint.yaml"
# Not Kubernetes API objects: checked by their own tests (test_deploy_k8s, test_deploy_aicore); custom resources
# (no schema in kubernetes-validate) against their CRDs in test_deploy_gateway.
NON_K8S_API_PREFIXES = ("kustomize.config.k8s.io/", "ai.sap.com/", "inference.networking.k8s.io/",
                        "gateway.networking.k8s.io/", "keda.sh/")


# ---- tools -------------------------------------------------------------------------------------------------

def yamllint_problems(path: Path) -> list[str]:
    result = run_tool([tool("yamllint"), "-c", str(YAMLLINT_CONFIG), "--strict", "-f", "parsable", str(path)])
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not problems:
        problems.append(f"yamllint exited {result.returncode}")
    return problems


# ---- files -------------------------------------------------------------------------------------------------

def k8s_manifests() -> list[Path]:
    """Every YAML file under k8s/ holding Kubernetes API objects."""
    return [
        path for path in sorted(K8S_DIR.rglob("*.yaml"))
        if not any(str(doc.get("apiVersion", "")).startswith(NON_K8S_API_PREFIXES) for doc in load_all(path))
    ]


def yaml_files() -> list[Path]:
    """Every YAML file of the repository (tracked or not, but not ignored by git), the deploy files first of all."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.yaml", "*.yml"],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    paths = {REPO_ROOT / line for line in listed.stdout.splitlines() if (REPO_ROOT / line).is_file()}
    deploy = [*K8S_DIR.rglob("*.y*ml"), *(REPO_ROOT / "docker").glob("*.y*ml"), YAMLLINT_CONFIG,
              REPO_ROOT / ".hadolint.yaml"]
    return sorted(paths | set(deploy))


def test_deploy_files_exist():
    for name in ["deployment.yaml", "pvc.yaml", "service.yaml", "secret.example.yaml", "kustomization.yaml",
                 "configmap-models.yaml", "sidecar/deployment.yaml", "sidecar/kustomization.yaml",
                 "aicore/serving-template.yaml", "cache/deployment.yaml", "cache/service.yaml", "cache/pvc.yaml",
                 "cache/networkpolicy.yaml", "cache/kustomization.yaml", "cache-client/kustomization.yaml",
                 "cache-client/networkpolicy.yaml", "shared-volume/kustomization.yaml"]:
        assert (K8S_DIR / name).is_file(), name
    assert len(k8s_manifests()) >= 15


# ---- kubernetes-validate --strict ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", k8s_manifests(), ids=rel)
def test_manifest_is_valid_kubernetes(path):
    assert kubernetes_validate_problems(path) == []


@pytest.mark.parametrize("old, new", [
    ("        runAsNonRoot: true\n", "        runAsNonRoot: true\n        runAsNonRooot: true\n"),  # unknown field
    ("  replicas: 1\n", "  replicas: one\n"),                                                     # wrong type
    ("apiVersion: apps/v1\n", "apiVersion: apps/v9\n"),                                            # no schema
    ("          emptyDir:\n", "          emptyDirectory:\n"),                                      # unknown field
], ids=["unknown-field", "wrong-type", "unknown-api-version", "unknown-volume-type"])
def test_kubernetes_validate_rejects_broken_deployment(tmp_path, old, new):
    broken = break_text(K8S_DIR / "deployment.yaml", tmp_path, old, new)
    assert kubernetes_validate_problems(broken) != []


# ---- yamllint ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_passes_yamllint(path):
    assert yamllint_problems(path) == []


@pytest.mark.parametrize("old, new", [
    ("  replicas: 1\n", "  replicas: 1   \n"),                               # trailing spaces
    ("  replicas: 1\n", "  replicas: 1\n  replicas: 2\n"),                  # duplicate key
    ("  selector:\n", "  selector:\n     \n"),                               # whitespace-only line
    ("  strategy:\n", "  strategy:    # " + "x" * 120 + "\n"),              # line too long
], ids=["trailing-spaces", "duplicate-key", "blank-line-spaces", "line-too-long"])
def test_yamllint_rejects_broken_yaml(tmp_path, old, new):
    broken = break_text(K8S_DIR / "deployment.yaml", tmp_path, old, new)
    assert yamllint_problems(broken) != []


# ---- docker-compose.yml -------------------------------------------------------------------------------------

def compose_problems(path: Path) -> list[str]:
    (compose,) = load_all(path)
    services = compose.get("services", {})
    if len(services) != 1:
        return ["expected one service"]
    (service,) = services.values()
    problems = []
    build = service.get("build", {})
    if not (path.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve().is_file():
        problems.append("build does not point at docker/Dockerfile")
    if service.get("read_only") is not True:
        problems.append("root filesystem is not read-only")
    if "/tmp" not in service.get("tmpfs", []):
        problems.append("/tmp is not a tmpfs")
    if not any(str(v).endswith(":/models") for v in service.get("volumes", [])):
        problems.append("/models is not a volume")
    if "ALL" not in service.get("cap_drop", []):
        problems.append("capabilities are not dropped")
    return problems


def test_compose_file_runs_the_image_read_only():
    assert compose_problems(REPO_ROOT / "docker" / "docker-compose.yml") == []


@pytest.mark.parametrize("old, new", [
    ("    read_only: true\n", ""),
    ("      - models:/models\n", "      - models:/data\n"),
    ("      dockerfile: docker/Dockerfile\n", "      dockerfile: Dockerfile\n"),
], ids=["writable-root", "no-models-volume", "wrong-dockerfile"])
def test_compose_check_rejects_broken_copy(tmp_path, old, new):
    (tmp_path / "docker").mkdir()
    broken = break_text(REPO_ROOT / "docker" / "docker-compose.yml", tmp_path / "docker", old, new)
    shutil.copy(REPO_ROOT / "docker" / "Dockerfile", tmp_path / "docker" / "Dockerfile")
    assert compose_problems(broken) != []


# ---- docs/deployment.md --------------------------------------------------------------------------------------------------

DOC_MUST_HAVE = ["docker run", "docker compose", "kubectl apply -k k8s", "kubectl create secret generic",
                 "curl", "AI-Resource-Group", "serving-template.yaml", "\"async\": true", "/v2/admin/secrets"]


def doc_problems(path: Path) -> list[str]:
    text = path.read_text()
    problems = [f"{path.name} lacks {needle!r}" for needle in DOC_MUST_HAVE if needle not in text]
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for topic in ("Docker", "Kubernetes", "SAP AI Core"):
        if not any(topic in heading for heading in headings):
            problems.append(f"no section on {topic}")
    return problems


def test_deploy_doc_covers_docker_kubernetes_and_ai_core():
    assert doc_problems(REPO_ROOT / "docs" / "deployment.md") == []


def test_deploy_doc_check_rejects_doc_without_resource_group_header(tmp_path):
    text = (REPO_ROOT / "docs" / "deployment.md").read_text().replace("AI-Resource-Group", "Resource-Group")
    (tmp_path / "deploy.md").write_text(text)
    assert doc_problems(tmp_path / "deploy.md") != []
