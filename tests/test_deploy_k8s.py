"""Offline checks of k8s/: the Deployments' hardening, probes, volumes and pre-pull; the sidecar example;
the kustomizations. Schemas are checked in test_deploy.py (kubernetes-validate --strict); the model cache and
its NetworkPolicies in test_deploy_k8s_cache.py.

Every check runs on the real manifest and on a copy broken in one specific way.
"""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest

from tests.deploy_checks import (K8S_DIR, break_text, env_value, load_all, pod_containers,
                                 pod_security_problems, proxy_container, rel, volume_kinds, write_yaml)


# ---- the Deployment's hardening, probes and volumes ---------------------------------------------------------

def proxy_probe_problems(pod: dict) -> list[str]:
    proxy = proxy_container(pod)
    if proxy is None:
        return ["no container serves port 8080"]
    problems = []
    paths = {kind: proxy.get(kind, {}).get("httpGet", {}).get("path")
             for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    if paths["startupProbe"] is None:
        problems.append("proxy has no HTTP startupProbe")
    if paths["readinessProbe"] != "/readyz":
        problems.append("proxy readiness is not /readyz")
    if paths["livenessProbe"] != "/livez":
        problems.append("proxy liveness is not /livez (it must not depend on the backend)")
    mounts = {m.get("mountPath"): m["name"] for m in proxy.get("volumeMounts", [])}
    if "persistentVolumeClaim" not in volume_kinds(pod).get(mounts.get("/models", ""), set()):
        problems.append("/models is not a PVC in the proxy container")
    return problems


def deployment_problems(deployment: dict) -> list[str]:
    """Hardening, probes, volumes and grace period the deploy issue asks of a Deployment."""
    problems = []
    if deployment.get("spec", {}).get("strategy", {}).get("type") != "Recreate":
        problems.append("strategy is not Recreate (the models PVC is ReadWriteOnce)")
    pod = deployment["spec"]["template"]["spec"]
    problems += pod_security_problems(pod) + proxy_probe_problems(pod)
    proxy = proxy_container(pod) or {}
    graceful_s = int(env_value(proxy, "PROXY_GRACEFUL_TIMEOUT_S") or 20)
    if pod.get("terminationGracePeriodSeconds", 30) < graceful_s + 10:
        problems.append("terminationGracePeriodSeconds leaves a pull no time to save its progress")
    return problems


def prepull_problems(deployment: dict) -> list[str]:
    """The pre-pull init container uses the project's own verified pull, listed in a ConfigMap."""
    pod = deployment["spec"]["template"]["spec"]
    prepull = next((c for c in pod.get("initContainers", []) if c["name"] == "prepull"), None)
    if prepull is None:
        return ["no prepull init container"]
    command = " ".join(prepull.get("command", []) + prepull.get("args", []))
    problems = [] if re.search(r"python -m proxy pull --local\b", command) else ["prepull does not run "
                                                                                 "python -m proxy pull --local"]
    uses_configmap = any("configMap" in v for v in pod.get("volumes", [])) or any(
        "configMapRef" in src for src in prepull.get("envFrom", []))
    if not uses_configmap:
        problems.append("prepull does not read its list from a ConfigMap")
    return problems


SERVING_DEPLOYMENTS = [K8S_DIR / "deployment.yaml", K8S_DIR / "sidecar" / "deployment.yaml"]


@pytest.mark.parametrize("path", [*SERVING_DEPLOYMENTS, K8S_DIR / "cache" / "deployment.yaml"], ids=rel)
def test_deployment_is_hardened_and_probed(path):
    (deployment,) = load_all(path)
    assert deployment_problems(deployment) == []


@pytest.mark.parametrize("path", SERVING_DEPLOYMENTS, ids=rel)
def test_deployment_prepulls_with_the_verified_pull(path):
    """The model cache has no pre-pull: it pulls what the serving pods ask for."""
    (deployment,) = load_all(path)
    assert prepull_problems(deployment) == []


def _walk(doc: dict, path: str) -> tuple[dict | list, str | int]:
    """The container of the node at dotted `path` (list indices as numbers) and its key there."""
    keys = [int(key) if key.isdigit() else key for key in path.split(".")]
    node = doc
    for key in keys[:-1]:
        node = node[key]
    return node, keys[-1]


def _del(path: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        node, key = _walk(doc, path)
        del node[key]
    return mutate


def _set(path: str, value) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        node, key = _walk(doc, path)
        node[key] = value
    return mutate


POD = "spec.template.spec"
MAIN = f"{POD}.containers.0"
DEPLOYMENT_BREAKAGES = {
    "no-runAsNonRoot": _del(f"{POD}.securityContext.runAsNonRoot"),
    "root-uid": _set(f"{POD}.securityContext.runAsUser", 0),
    "rolling-update": _set("spec.strategy", {"type": "RollingUpdate"}),
    "fsgroup-always": _set(f"{POD}.securityContext.fsGroupChangePolicy", "Always"),
    "no-seccomp": _del(f"{POD}.securityContext.seccompProfile"),
    "writable-root": _set(f"{MAIN}.securityContext.readOnlyRootFilesystem", False),
    "caps-kept": _del(f"{MAIN}.securityContext.capabilities"),
    "no-startup-probe": _del(f"{MAIN}.startupProbe"),
    "readiness-not-health": _set(f"{MAIN}.readinessProbe.httpGet.path", "/v1/models"),
    "liveness-on-backend": _set(f"{MAIN}.livenessProbe.httpGet.path", "/v1/health"),
    "no-resources": _del(f"{MAIN}.resources"),
    "short-grace": _set(f"{POD}.terminationGracePeriodSeconds", 30),
    "tmp-not-emptydir": _set(f"{POD}.volumes.1", {"name": "tmp", "hostPath": {"path": "/tmp"}}),
    "init-not-hardened": _set(f"{POD}.initContainers.0.securityContext", {}),
}


@pytest.mark.parametrize("breakage", DEPLOYMENT_BREAKAGES, ids=str)
def test_deployment_check_rejects_broken_copy(tmp_path, breakage):
    (original,) = load_all(K8S_DIR / "deployment.yaml")
    broken = copy.deepcopy(original)
    DEPLOYMENT_BREAKAGES[breakage](broken)
    (reloaded,) = load_all(write_yaml(tmp_path / "deployment.yaml", [broken]))
    assert deployment_problems(reloaded) != []


def test_prepull_check_rejects_shell_download(tmp_path):
    (deployment,) = load_all(K8S_DIR / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["initContainers"][0]["command"] = [
        "sh", "-c", "curl -LO https://huggingface.co/x/y/resolve/main/m.gguf"]
    (reloaded,) = load_all(write_yaml(tmp_path / "deployment.yaml", [deployment]))
    assert prepull_problems(reloaded) != []


def test_sidecar_runs_proxy_as_native_sidecar_next_to_llama_server():
    (deployment,) = load_all(K8S_DIR / "sidecar" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    proxy = proxy_container(pod)
    assert proxy in pod["initContainers"] and proxy.get("restartPolicy") == "Always"
    assert "start.sh" not in " ".join(proxy.get("command", [])), "the sidecar proxy must not start its own backend"
    assert env_value(proxy, "BACKEND_URL") == "http://127.0.0.1:8081"
    (server,) = pod["containers"]
    assert "llama.cpp" in server["image"]
    claims = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    for container in (proxy, server):
        assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/models"} <= claims


# ---- kustomizations, Secret example -------------------------------------------------------------------------

def kustomization_problems(path: Path) -> list[str]:
    (kustomization,) = load_all(path)
    problems = [] if kustomization.get("kind") == "Kustomization" else ["kind is not Kustomization"]
    listed = kustomization.get("resources", [])
    problems += [f"resource {name} does not exist" for name in listed if not (path.parent / name).is_file()]
    # Every manifest next to it is applied, except the Secret example (real tokens never come from the repo).
    here = {p.name for p in path.parent.glob("*.yaml")} - {path.name, "secret.example.yaml"}
    problems += [f"{name} is not listed in resources" for name in sorted(here - set(listed))]
    if "secret.example.yaml" in listed:
        problems.append("the Secret example must not be applied")
    images = {image["name"] for image in kustomization.get("images", [])}
    used = {c["image"].split(":")[0] for name in listed if (path.parent / name).is_file()
            for doc in load_all(path.parent / name) if doc.get("kind") == "Deployment"
            for c in pod_containers(doc["spec"]["template"]["spec"])}
    if "gguf-proxy" not in images or "gguf-proxy" not in used:
        problems.append("the gguf-proxy image is not set through images:")
    return problems


@pytest.mark.parametrize("path", [K8S_DIR / "kustomization.yaml", K8S_DIR / "sidecar" / "kustomization.yaml",
                                  K8S_DIR / "cache" / "kustomization.yaml"], ids=rel)
def test_kustomization_lists_every_manifest(path):
    assert kustomization_problems(path) == []


@pytest.mark.parametrize("old, new", [
    ("  - pvc.yaml\n", "  - pvc.yml\n"),
    ("  - service.yaml\n", "  - service.yaml\n  - secret.example.yaml\n"),
], ids=["missing-file", "applies-secret-example"])
def test_kustomization_check_rejects_broken_copy(tmp_path, old, new):
    for source in K8S_DIR.glob("*.yaml"):
        shutil.copy(source, tmp_path / source.name)
    broken = break_text(K8S_DIR / "kustomization.yaml", tmp_path, old, new)
    assert kustomization_problems(broken) != []


def test_secret_example_holds_both_keys_as_placeholders():
    (secret,) = load_all(K8S_DIR / "secret.example.yaml")
    assert secret["kind"] == "Secret" and set(secret["stringData"]) == {"HF_TOKEN", "PROXY_API_KEY"}
    assert all("replace" in value for value in secret["stringData"].values())


def test_the_manifest_comes_from_a_configmap_mounted_without_subpath():
    """A subPath mount never sees a ConfigMap update; the proxy notices the kubelet's symlink swap only
    through a directory mount."""
    from proxy.declared.manifest import parse_manifest

    (deployment,) = load_all(K8S_DIR / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    proxy = proxy_container(pod)
    path = env_value(proxy, "MODELS_MANIFEST")
    [mount] = [m for m in proxy["volumeMounts"] if path and path.startswith(m["mountPath"] + "/")]
    assert "subPath" not in mount
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    (configmap,) = load_all(K8S_DIR / "configmap-manifest.yaml")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert "configmap-manifest.yaml" in (K8S_DIR / "kustomization.yaml").read_text()
    assert parse_manifest(configmap["data"][path.rsplit("/", 1)[1]]) == ()
