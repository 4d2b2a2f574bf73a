"""Offline checks of k8s/inference-gateway/ (docs/deployment.md, "Many pods behind the inference gateway"): the
custom resources (InferencePool, Gateway, HTTPRoute, KEDA's ScaledObject) against the CRDs their projects publish
(tests/data/crds/, README there), and what ties the pieces together: the pool selects the serving pods on a port
they serve, its endpoint picker has a Service and a configuration with the queue, KV and prefix scorers, the route
sends /v1 to the pool, the ScaledObject scales the serving Deployment on the queue, and a new pod fetches its
model from the cluster's cache. Standard kinds are checked by test_deploy.py (kubernetes-validate, yamllint).
Every check runs on the real files and on a copy broken in one specific way.
"""
from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.helpers import REPO_ROOT
from tests.deploy_checks import K8S_DIR, env_value, load_all, pod_containers, pod_security_problems, selects

GATEWAY_DIR = K8S_DIR / "inference-gateway"
CRD_DIR = REPO_ROOT / "tests" / "data" / "crds"
CUSTOM_FILES = ["inferencepool.yaml", "gateway.yaml", "scaledobject.yaml"]
SCORERS = {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"}


# ---- the custom resources against their CRDs ------------------------------------------------------------------

def _strict(schema: dict) -> dict:
    """A CRD's structural schema as JSON Schema that rejects unknown fields, as `kubectl apply` does (field
    validation Strict) where the API server would otherwise prune them."""
    schema = dict(schema)
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        if key in schema:
            schema[key] = {name: _strict(sub) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(sub) for sub in schema[key]]
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the strict schema, for every CRD in tests/data/crds/."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.json")):
        crd = json.loads(path.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, crd["spec"]["names"]["kind"])] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def crd_problems(doc: dict) -> list[str]:
    """What the CRD of `doc`'s apiVersion and kind rejects in it; a resource without a known CRD is a problem."""
    where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    schema = crd_schemas().get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        return [f"{where}: no CRD for {doc.get('apiVersion')} {doc.get('kind')}"]
    if not doc.get("metadata", {}).get("name"):
        return [f"{where}: no metadata.name"]
    errors = jsonschema.Draft7Validator(schema).iter_errors(doc)
    return [f"{where}: {'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


def test_the_crds_hold_every_custom_kind_the_manifests_use():
    assert set(crd_schemas()) == {("inference.networking.k8s.io/v1", "InferencePool"),
                                  ("gateway.networking.k8s.io/v1", "Gateway"),
                                  ("gateway.networking.k8s.io/v1", "HTTPRoute"),
                                  ("keda.sh/v1alpha1", "ScaledObject")}


@pytest.mark.parametrize("name", CUSTOM_FILES)
def test_custom_resources_are_valid_against_their_crds(name):
    docs = load_all(GATEWAY_DIR / name)
    assert docs and [problem for doc in docs for problem in crd_problems(doc)] == []


@pytest.mark.parametrize("name, path, value", [
    ("inferencepool.yaml", ["spec", "targetPorts", 0, "number"], "http"),       # a name where a number goes
    ("inferencepool.yaml", ["spec", "selector", "matchExpressions"], []),       # v1 has matchLabels only
    ("inferencepool.yaml", ["spec", "endpointPickerRef", "failureMode"], "Open"),
    ("gateway.yaml", ["spec", "listeners", 0, "protocol"], None),
    ("gateway.yaml", ["spec", "rules", 0, "backendRefs", 0, "weight"], -1),     # the HTTPRoute's (second doc)
    ("scaledobject.yaml", ["spec", "triggers"], []),
    ("scaledobject.yaml", ["spec", "scaleTargetRef", "deployment"], "gguf-proxy-pool"),
    ("inferencepool.yaml", ["apiVersion"], "inference.networking.k8s.io/v2"),
], ids=["port-name", "match-expressions", "failure-mode", "no-protocol", "negative-weight", "no-triggers",
        "unknown-field", "unknown-version"])
def test_crd_check_rejects_broken_copy(name, path, value):
    docs = copy.deepcopy(load_all(GATEWAY_DIR / name))
    doc = docs[-1] if "rules" in path else docs[0]
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert crd_problems(doc) != []


# ---- how the pieces fit ----------------------------------------------------------------------------------------

def gateway_docs(folder: Path = GATEWAY_DIR) -> dict[str, dict[str, dict]]:
    """The folder's resources (and the cache's it builds on) by kind, then name."""
    paths = [*sorted(folder.glob("*.yaml")), *sorted((K8S_DIR / "cache").glob("*.yaml"))]
    found: dict[str, dict[str, dict]] = {}
    for path in paths:
        for doc in load_all(path):
            found.setdefault(doc["kind"], {})[doc.get("metadata", {}).get("name", "")] = doc
    return found


def pool_problems(docs: dict[str, dict[str, dict]]) -> list[str]:
    """The InferencePool selects the serving pods, targets a port they serve, and names a picker Service that
    reaches the picker's ext-proc port."""
    (pool,) = docs.get("InferencePool", {}).values()
    spec, problems = pool["spec"], []
    pods = [d["spec"]["template"] for d in docs["Deployment"].values()
            if selects(spec["selector"], d["spec"]["template"]["metadata"]["labels"])]
    if not pods:
        return ["the InferencePool's selector matches no Deployment's pods"]
    for pod in pods:
        ports = {p["containerPort"] for c in pod_containers(pod["spec"]) for p in c.get("ports", [])}
        problems += [f"target port {t['number']} is no container port" for t in spec["targetPorts"]
                     if t["number"] not in ports]
        if pod["metadata"]["labels"].get("llm-d.ai/engine-type") != "vllm":
            problems.append("the pool's pods are not labelled llm-d.ai/engine-type: vllm (our gauges' names)")
    picker = docs.get("Service", {}).get(spec["endpointPickerRef"]["name"])
    if picker is None:
        return problems + ["the endpoint picker's Service does not exist"]
    if spec["endpointPickerRef"]["port"]["number"] not in {p["port"] for p in picker["spec"]["ports"]}:
        problems.append("the picker's Service has no port the pool names")
    epp = [d for d in docs["Deployment"].values() if selects({"matchLabels": picker["spec"]["selector"]},
                                                             d["spec"]["template"]["metadata"]["labels"])]
    if not epp:
        problems.append("the picker's Service selects no Deployment")
    return problems


def picker_problems(docs: dict[str, dict[str, dict]]) -> list[str]:
    """The picker runs against this pool with a configuration (mounted from its ConfigMap) that scores by queue,
    KV use and prefix."""
    (pool,) = docs["InferencePool"].values()
    epp = docs["Deployment"].get(docs["Service"][pool["spec"]["endpointPickerRef"]["name"]]["metadata"]["name"])
    if epp is None:
        return ["no picker Deployment named as its Service"]
    (container,) = epp["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    problems = [] if args[args.index("--pool-name") + 1] == pool["metadata"]["name"] else \
        ["--pool-name is not the pool"]
    if not container["image"].startswith("ghcr.io/llm-d/llm-d-router-endpoint-picker:"):
        problems.append("not llm-d-router's endpoint picker image")
    config_path = Path(args[args.index("--config-file") + 1])
    mount = next((m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)), None)
    volume = next((v for v in epp["spec"]["template"]["spec"]["volumes"] if mount and v["name"] == mount["name"]), {})
    config_map = docs["ConfigMap"].get(volume.get("configMap", {}).get("name"), {})
    text = config_map.get("data", {}).get(config_path.name)
    if text is None:
        return problems + ["--config-file is not a key of a mounted ConfigMap"]
    config = yaml.safe_load(text)
    declared = {plugin.get("name", plugin["type"]) for plugin in config["plugins"]}
    (profile,) = config["schedulingProfiles"]
    used = {ref["pluginRef"] for ref in profile["plugins"]}
    problems += [f"pluginRef {name} is not declared" for name in sorted(used - declared)]
    problems += [f"the profile does not score with {name}" for name in sorted(SCORERS - used)]
    return problems


def route_and_scaling_problems(docs: dict[str, dict[str, dict]]) -> list[str]:
    (pool,) = docs["InferencePool"].values()
    (route,) = docs["HTTPRoute"].values()
    problems = []
    if not {ref["name"] for ref in route["spec"]["parentRefs"]} <= set(docs.get("Gateway", {})):
        problems.append("the HTTPRoute's parent is no Gateway here")
    to_pool = [rule for rule in route["spec"]["rules"] for ref in rule["backendRefs"]
               if (ref.get("group"), ref.get("kind"), ref["name"]) ==
               ("inference.networking.k8s.io", "InferencePool", pool["metadata"]["name"])]
    if not any(m["path"] == {"type": "PathPrefix", "value": "/v1"} for rule in to_pool for m in rule["matches"]):
        problems.append("no rule sends /v1 to the InferencePool")
    (scaled,) = docs["ScaledObject"].values()
    target = docs["Deployment"].get(scaled["spec"]["scaleTargetRef"]["name"], {})
    if not selects(pool["spec"]["selector"], target.get("spec", {}).get("template", {}).get("metadata", {})
                   .get("labels", {})):
        problems.append("the ScaledObject does not scale the pool's Deployment")
    if not any("vllm:num_requests_waiting" in t["metadata"].get("query", "") for t in scaled["spec"]["triggers"]
               if t["type"] == "prometheus"):
        problems.append("no Prometheus trigger on vllm:num_requests_waiting")
    return problems


def cache_problems(docs: dict[str, dict[str, dict]]) -> list[str]:
    """A new pod gets its model from the cluster's cache, which admits it, and keeps it loaded."""
    (pool,) = docs["InferencePool"].values()
    deployment = next(d for d in docs["Deployment"].values()
                      if selects(pool["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]))
    pod = deployment["spec"]["template"]
    (server,) = pod["spec"]["containers"]
    problems = pod_security_problems(pod["spec"])
    mirror = env_value(server, "HF_MIRRORS") or ""
    if mirror.split("//")[-1].split(":")[0] not in docs["Service"]:
        problems.append("HF_MIRRORS does not name the model cache's Service")
    policy = docs["NetworkPolicy"]["gguf-model-cache"]["spec"]["ingress"][0]["from"][0]["podSelector"]
    if not selects(policy, pod["metadata"]["labels"]):
        problems.append("the model cache's NetworkPolicy does not admit the pool's pods")
    manifest = next(v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v)
    (models,) = [yaml.safe_load(text) for text in docs["ConfigMap"][manifest]["data"].values()]
    if not models["models"] or not all(entry.get("keep_loaded") for entry in models["models"]):
        problems.append("the declared model is not kept loaded (the gauges exist per loaded model)")
    return problems


def kustomization_problems(folder: Path = GATEWAY_DIR) -> list[str]:
    (kustomization,) = load_all(folder / "kustomization.yaml")
    listed = kustomization["resources"]
    problems = [f"{name} does not exist" for name in listed
                if not ((folder / name).is_file() or (folder / name / "kustomization.yaml").is_file())]
    problems += [f"{path.name} is not listed" for path in sorted(folder.glob("*.yaml"))
                 if path.name != "kustomization.yaml" and path.name not in listed]
    if "gguf-proxy" not in {image["name"] for image in kustomization.get("images", [])}:
        problems.append("the gguf-proxy image is not set through images:")
    return problems


CHECKS = [pool_problems, picker_problems, route_and_scaling_problems, cache_problems]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_gateway_pieces_fit_together(check):
    assert check(gateway_docs()) == []


def test_kustomization_applies_every_manifest_and_the_cache():
    assert kustomization_problems() == []
    assert "../cache" in load_all(GATEWAY_DIR / "kustomization.yaml")[0]["resources"]


def _edit(docs: dict, kind: str, name: str, path: list, value) -> dict:
    docs = copy.deepcopy(docs)
    target = docs[kind][name]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return docs


BREAKAGES = {
    "selector-misses-pods": (pool_problems, "InferencePool", ["spec", "selector", "matchLabels"], {"app": "x"}),
    "target-port-not-served": (pool_problems, "InferencePool", ["spec", "targetPorts"], [{"number": 8081}]),
    "picker-service-missing": (pool_problems, "InferencePool", ["spec", "endpointPickerRef", "name"], "nope"),
    "picker-without-kv-scorer": (picker_problems, "ConfigMap", ["data", "epp-config.yaml"],
                                 "plugins: [{type: queue-scorer}, {type: prefix-cache-scorer}]\nschedulingProfiles:\n"
                                 "  - {name: default, plugins: [{pluginRef: queue-scorer},\n"
                                 "                              {pluginRef: prefix-cache-scorer}]}\n"),
    "route-to-a-service": (route_and_scaling_problems, "HTTPRoute", ["spec", "rules", 0, "backendRefs"],
                           [{"kind": "Service", "name": "gguf-proxy-pool", "port": 8080}]),
    "scales-another-deployment": (route_and_scaling_problems, "ScaledObject", ["spec", "scaleTargetRef", "name"],
                                  "gguf-proxy-pool-epp"),
    "no-cache-mirror": (cache_problems, "Deployment", ["spec", "template", "spec", "containers", 0, "env"], []),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_fit_checks_reject_broken_copy(breakage):
    check, kind, path, value = BREAKAGES[breakage]
    docs = gateway_docs()
    name = {"ConfigMap": "gguf-proxy-pool-epp", "Deployment": "gguf-proxy-pool"}.get(kind) or next(iter(docs[kind]))
    assert check(_edit(docs, kind, name, path, value)) != []
