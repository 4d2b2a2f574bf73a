"""Offline checks of "pull once per cluster" in k8s/: the model cache (k8s/cache/) and the Component that makes a
serving Deployment its client (k8s/cache-client/), for both serving variants (k8s/, k8s/sidecar/); and the other
topology, replicas sharing a ReadWriteMany volume (k8s/shared-volume/).

What a user relies on: the cache Service reaches the cache pods, the serving proxy's HF_MIRRORS names that
Service, and the NetworkPolicies let exactly that traffic through (clients in, DNS and HTTPS out, serving pods to
the cache). The Component's patches are applied here as kustomize would (strategic merge of labels, containers
and env by name), so no kustomize binary is needed. Schemas: test_deploy.py; hardening: test_deploy_k8s.py.
Every check runs on the real files and on a copy broken in one specific way.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy_checks import K8S_DIR, env_value, load_all, pod_containers, proxy_container, selects

DNS_AND_HTTPS = {("UDP", 53), ("TCP", 53), ("TCP", 443)}
VARIANTS = {"deployment": "deployment.yaml", "sidecar": "sidecar/deployment.yaml"}


# ---- reading the manifests ----------------------------------------------------------------------------------

def docs_of(folder: Path, kind: str) -> list[dict]:
    return [doc for path in sorted(folder.glob("*.yaml")) for doc in load_all(path) if doc.get("kind") == kind]


def _secret_ref(container: dict, name: str) -> tuple[str, str] | None:
    """(Secret, key) an env variable of the container is read from, or None."""
    entry = next((e for e in container.get("env", []) if e.get("name") == name), {})
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    return (ref.get("name"), ref.get("key")) if ref else None


def port_matches(policy_port: int | str | None, container: dict) -> bool:
    """A NetworkPolicy port (number or name) names one of the container's ports."""
    return any(policy_port in (p.get("containerPort"), p.get("name")) for p in container.get("ports", []))


def merge_by_name(items: list[dict], patches: list[dict], problems: list[str], where: str) -> list[dict]:
    """Strategic merge of containers and env (lists keyed by name); a patch naming no existing container would
    add a half-empty one, which is a problem."""
    merged = [dict(item) for item in items]
    for patch in patches:
        target = next((item for item in merged if item["name"] == patch["name"]), None)
        if target is None:
            problems.append(f"the patch names {where} {patch['name']!r}, which does not exist")
            continue
        env = {e["name"]: e for e in target.get("env", [])}
        env.update({e["name"]: e for e in patch.get("env", [])})
        target.update({k: v for k, v in patch.items() if k != "env"}, env=list(env.values()))
    return merged


def apply_component(deployment: dict, component: dict, problems: list[str]) -> dict:
    """The Deployment as the Component's patches targeting it leave it."""
    name = deployment["metadata"]["name"]
    patches = [yaml.safe_load(p["patch"]) for p in component.get("patches", [])
               if p.get("target", {}).get("kind") == "Deployment" and p["target"].get("name") == name]
    if not patches:
        problems.append(f"the Component does not patch Deployment {name}")
    result = yaml.safe_load(yaml.safe_dump(deployment))
    for patch in patches:
        template, pod = result["spec"]["template"], result["spec"]["template"]["spec"]
        template["metadata"]["labels"].update(patch["spec"]["template"].get("metadata", {}).get("labels", {}))
        for key in ("initContainers", "containers"):
            wanted = patch["spec"]["template"].get("spec", {}).get(key, [])
            pod[key] = merge_by_name(pod.get(key, []), wanted, problems, key)
    return result


# ---- the checks -----------------------------------------------------------------------------------------------

def cache_service_problems(cache_dir: Path) -> tuple[str | None, list[str]]:
    """The cache Service selects the cache pods and reaches its proxy port; `name:port` of the Service."""
    (deployment,), (service,) = docs_of(cache_dir, "Deployment"), docs_of(cache_dir, "Service")
    pod = deployment["spec"]["template"]
    cache = proxy_container(pod["spec"]) or {}
    problems = [] if env_value(cache, "MIRROR_PULL_THROUGH") == "true" else ["the cache is not pull-through"]
    if not selects(deployment["spec"]["selector"], pod["metadata"]["labels"]):
        problems.append("the cache Deployment's selector does not select its own pods")
    if not service["spec"].get("selector") or not selects({"matchLabels": service["spec"]["selector"]},
                                                          pod["metadata"]["labels"]):
        problems.append("the cache Service does not select the cache pods")
    (port,) = service["spec"]["ports"]
    if not port_matches(port.get("targetPort", port["port"]), cache):
        problems.append("the cache Service's targetPort is not the cache container's port")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    if claims != {pvc["metadata"]["name"] for pvc in docs_of(cache_dir, "PersistentVolumeClaim")}:
        problems.append("the cache does not use its own PVC")
    return f"{service['metadata']['name']}:{port['port']}", problems


def egress_problems(policy: dict, allowed_peers: list[tuple[dict, dict]]) -> list[str]:
    """Egress: DNS (UDP and TCP 53) and HTTPS (443) anywhere; anything else only to `allowed_peers`
    (pod labels, container) on that container's port."""
    problems, open_ports = [], set()
    for rule in policy["spec"].get("egress", []):
        ports = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}
        if "to" not in rule:
            open_ports |= ports
            if not ports or not ports <= DNS_AND_HTTPS:
                problems.append(f"egress to anywhere on {sorted(ports, key=str) or 'every port'}")
            continue
        for peer in rule["to"]:
            for labels, container in allowed_peers:
                if "podSelector" in peer and selects(peer["podSelector"], labels) and ports and all(
                        port_matches(p, container) for _, p in ports):
                    break
            else:
                problems.append(f"egress to {peer} on {sorted(ports, key=str)} is not an allowed peer's port")
    if DNS_AND_HTTPS - open_ports:
        problems.append(f"egress misses {sorted(DNS_AND_HTTPS - open_ports)} (DNS, HTTPS to the Hub)")
    if "Egress" not in policy["spec"].get("policyTypes", []):
        problems.append("the policy does not restrict egress")
    return problems


def ingress_problems(policy: dict, pod_labels: dict, container: dict, sources: dict[str, dict]) -> list[str]:
    """The policy selects the pods, admits only their proxy port, and each of `sources` (what: labels) may in."""
    spec = policy["spec"]
    problems = [] if selects(spec["podSelector"], pod_labels) else ["the policy does not select the pods"]
    if "Ingress" not in spec.get("policyTypes", []):
        problems.append("the policy does not restrict ingress")
    for rule in spec.get("ingress", []):
        if not rule.get("from") or not rule.get("ports"):
            problems.append("an ingress rule admits every source or every port")
        elif not all(port_matches(p.get("port"), container) for p in rule["ports"]):
            problems.append(f"ingress port {rule['ports']} is not the proxy's container port")
    for what, labels in sources.items():
        if not any(selects(peer.get("podSelector", {"matchLabels": {"": "-"}}), labels)
                   for rule in spec.get("ingress", []) for peer in rule.get("from", [])):
            problems.append(f"{what} may not reach the proxy port")
    return problems


def cluster_problems(k8s_dir: Path, variant: str) -> list[str]:
    """Everything a user of `components: [cache-client]` in the `variant` serving kustomization relies on."""
    cache_dir, component_dir = k8s_dir / "cache", k8s_dir / "cache-client"
    (component,) = load_all(component_dir / "kustomization.yaml")
    problems = [] if component.get("kind") == "Component" else ["cache-client is not a kustomize Component"]
    if not (component_dir / "../cache/kustomization.yaml").resolve() in {
            (component_dir / r / "kustomization.yaml").resolve() for r in component.get("resources", [])}:
        problems.append("the Component does not bring in the cache (../cache)")
    cache_host, service_problems = cache_service_problems(cache_dir)
    problems += service_problems
    (serving,) = load_all(k8s_dir / VARIANTS[variant])
    serving = apply_component(serving, component, problems)
    serving_pod = serving["spec"]["template"]
    proxy = proxy_container(serving_pod["spec"]) or {}
    (cache_deployment,) = docs_of(cache_dir, "Deployment")
    cache_pod = cache_deployment["spec"]["template"]
    cache = proxy_container(cache_pod["spec"]) or {}
    for container in (c for c in pod_containers(serving_pod["spec"]) if "gguf-proxy" in c.get("image", "")):
        mirrors = (env_value(container, "HF_MIRRORS") or "").split(",")
        if urlsplit(mirrors[0].strip()).netloc != cache_host:
            problems.append(f"{container['name']}: HF_MIRRORS {mirrors} does not name the cache first ({cache_host})")
        # The cache hands out restricted files only for its PROXY_API_KEY: the serving proxies show it as
        # MIRROR_API_KEY (docs/api.md; their own PROXY_API_KEY never goes to a mirror).
        if _secret_ref(container, "MIRROR_API_KEY") != _secret_ref(cache, "PROXY_API_KEY") \
                or _secret_ref(cache, "PROXY_API_KEY") is None:
            problems.append(f"{container['name']}: MIRROR_API_KEY is not the cache's PROXY_API_KEY")
    serving_labels = serving_pod["metadata"]["labels"]
    (cache_policy,) = docs_of(cache_dir, "NetworkPolicy")
    problems += [f"cache policy: {p}" for p in ingress_problems(cache_policy, cache_pod["metadata"]["labels"], cache,
                                                                 {"the serving pods": serving_labels})]
    problems += [f"cache policy: {p}" for p in egress_problems(cache_policy, [])]
    (serving_policy,) = docs_of(component_dir, "NetworkPolicy")
    clients = {"a client labelled gguf-proxy/client": {"gguf-proxy/client": "true"}, "a peer": serving_labels}
    problems += [f"serving policy: {p}" for p in ingress_problems(serving_policy, serving_labels, proxy, clients)]
    peers = [(cache_pod["metadata"]["labels"], cache), (serving_labels, proxy)]
    problems += [f"serving policy: {p}" for p in egress_problems(serving_policy, peers)]
    if not any(selects(peer.get("podSelector", {}), cache_pod["metadata"]["labels"])
               for rule in serving_policy["spec"].get("egress", []) for peer in rule.get("to", [])):
        problems.append("serving policy: the serving pods may not reach the cache")
    return problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_serving_pods_pull_through_the_cache_and_only_the_intended_traffic_flows(variant):
    assert cluster_problems(K8S_DIR, variant) == []


def test_the_cluster_components_are_opt_in_and_named_in_both_kustomizations():
    """Off by default: the cache's NetworkPolicy admits only labelled clients, which would cut off existing users;
    a ReadWriteMany volume needs a storage class that not every cluster has."""
    for path, prefix in ((K8S_DIR / "kustomization.yaml", ""), (K8S_DIR / "sidecar" / "kustomization.yaml", "../")):
        (kustomization,) = load_all(path)
        assert "components" not in kustomization
        text = path.read_text()
        assert f"# components:\n#   - {prefix}cache-client\n" in text and "#   shared-volume:" in text


# ---- the other topology: replicas on one ReadWriteMany volume ---------------------------------------------------

def shared_volume_problems(k8s_dir: Path, variant: str) -> list[str]:
    """The shared-volume Component makes the variant's models PVC ReadWriteMany and runs several replicas."""
    (component,) = load_all(k8s_dir / "shared-volume" / "kustomization.yaml")
    problems = [] if component.get("kind") == "Component" else ["shared-volume is not a kustomize Component"]
    folder = (k8s_dir / VARIANTS[variant]).parent
    patches = {(p["target"]["kind"], p["target"]["name"]): yaml.safe_load(p["patch"])
               for p in component.get("patches", [])}
    (deployment,) = docs_of(folder, "Deployment")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    for claim in claims:
        modes = patches.get(("PersistentVolumeClaim", claim), {}).get("spec", {}).get("accessModes")
        if modes != ["ReadWriteMany"]:
            problems.append(f"PVC {claim} does not become ReadWriteMany (patch: {modes})")
    spec = patches.get(("Deployment", deployment["metadata"]["name"]), {}).get("spec", {})
    if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 2:
        problems.append(f"Deployment {deployment['metadata']['name']} does not get several replicas")
    if spec.get("strategy", {}).get("type") != "RollingUpdate":
        problems.append("the strategy stays Recreate: every update would stop all replicas at once")
    return problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_shared_volume_component_shares_the_models_pvc_among_replicas(variant):
    assert shared_volume_problems(K8S_DIR, variant) == []


@pytest.mark.parametrize("old, new", [
    ("      kind: PersistentVolumeClaim\n      name: gguf-models\n",
     "      kind: PersistentVolumeClaim\n      name: models\n"),
    ("          - ReadWriteMany\n", "          - ReadWriteOnce\n"),
    ("        replicas: 3\n", "        replicas: 1\n"),
], ids=["wrong-pvc-name", "still-rwo", "one-replica"])
def test_shared_volume_check_rejects_broken_copy(tmp_path, old, new):
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    path = copy / "shared-volume" / "kustomization.yaml"
    assert old in path.read_text(), f"{old!r} not in {path}: update the broken-copy test"
    path.write_text(path.read_text().replace(old, new, 1))
    assert shared_volume_problems(copy, "deployment") != []


# ---- broken copies of the cache topology ------------------------------------------------------------------------

CLUSTER_BREAKAGES = {
    "service-selects-nothing": ("cache/service.yaml", "    app.kubernetes.io/name: gguf-model-cache\n  ports",
                                "    app.kubernetes.io/name: gguf-model-cach\n  ports"),
    "service-wrong-target": ("cache/service.yaml", "targetPort: http", "targetPort: 8081"),
    "not-pull-through": ("cache/deployment.yaml", 'MIRROR_PULL_THROUGH\n              value: "true"',
                         'MIRROR_PULL_THROUGH\n              value: "false"'),
    "mirror-wrong-port": ("cache-client/kustomization.yaml", "value: http://gguf-model-cache:8080",
                          "value: http://gguf-model-cache:8081"),
    "patch-unknown-container": ("cache-client/kustomization.yaml", "- name: prepull", "- name: pre-pull"),
    "no-mirror-key": ("cache-client/kustomization.yaml", "- name: MIRROR_API_KEY", "- name: MIRROR_API_KEYS"),
    "client-label-mismatch": ("cache/networkpolicy.yaml", '              gguf-model-cache/client: "true"',
                              '              gguf-model-cache/client: "yes"'),
    "cache-ingress-wrong-port": ("cache/networkpolicy.yaml", "port: 8080", "port: 8081"),
    "cache-egress-no-dns": ("cache/networkpolicy.yaml", "        - protocol: UDP\n          port: 53\n", ""),
    "cache-egress-everywhere": ("cache/networkpolicy.yaml", "  egress:\n", "  egress:\n    - {}\n"),
    "serving-no-https": ("cache-client/networkpolicy.yaml", "port: 443", "port: 80"),
    "serving-cannot-reach-cache": ("cache-client/networkpolicy.yaml",
                                   "              app.kubernetes.io/name: gguf-model-cache\n",
                                   "              app.kubernetes.io/name: gguf-model-cash\n"),
    "serving-ingress-from-all": ("cache-client/networkpolicy.yaml", "  ingress:\n    - from:\n",
                                 "  ingress:\n    - ports: [{port: 8080}]\n    - from:\n"),
}


@pytest.mark.parametrize("breakage", CLUSTER_BREAKAGES, ids=str)
def test_cluster_check_rejects_broken_copy(tmp_path, breakage):
    name, old, new = CLUSTER_BREAKAGES[breakage]
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    text = (copy / name).read_text()
    assert old in text, f"{old!r} not in {name}: update the broken-copy test"
    (copy / name).write_text(text.replace(old, new, 1))
    assert cluster_problems(copy, "deployment") != []
