"""Offline checks of k8s/aicore/serving-template.yaml, the ServingTemplate SAP AI Core syncs from git.

AI Core fills `{{inputs.parameters.X}}` placeholders and reads `spec.template.spec` as a KServe predictor.
kubernetes-validate has no KServe schema, so the predictor's KServe fields are checked here and the rest,
a Kubernetes PodSpec, is wrapped in a Pod and validated against the bundled Kubernetes schemas.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.deploy_checks import K8S_DIR, break_text, kubernetes_validate_problems

TEMPLATE = K8S_DIR / "aicore" / "serving-template.yaml"
START = K8S_DIR.parent / "docker" / "start.sh"
PLACEHOLDER = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# PredictorSpec = KServe's ComponentExtensionSpec (these) + a Kubernetes PodSpec (everything else).
KSERVE_FIELDS = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "containerConcurrency", "timeout",
                 "canaryTrafficPercent", "logger", "batcher", "labels", "annotations", "deploymentStrategy"}


def _mapping_node(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((value for k, value in node.value if k.value == key), None)
    return None


def _is_quoted(root: yaml.Node, *path: str) -> bool:
    node = root
    for key in path:
        node = _mapping_node(node, key)
        if node is None:
            return False
    return isinstance(node, yaml.ScalarNode) and node.style in ('"', "'")


def metadata_problems(template: dict, root: yaml.Node) -> list[str]:
    problems = []
    if template.get("apiVersion") != "ai.sap.com/v1alpha1" or template.get("kind") != "ServingTemplate":
        problems.append("not an ai.sap.com/v1alpha1 ServingTemplate")
    meta = template.get("metadata", {})
    if not DNS_LABEL.fullmatch(str(meta.get("name", ""))):
        problems.append("metadata.name is not a DNS label")
    for key in ("scenarios.ai.sap.com/name", "executables.ai.sap.com/name"):
        if not isinstance(meta.get("annotations", {}).get(key), str):
            problems.append(f"annotation {key} missing")
    if not isinstance(meta.get("labels", {}).get("scenarios.ai.sap.com/id"), str):
        problems.append("label scenarios.ai.sap.com/id missing")
    if not _is_quoted(root, "metadata", "labels", "ai.sap.com/version"):
        problems.append("label ai.sap.com/version is not a quoted string")
    return problems


def parameter_problems(template: dict) -> tuple[dict[str, str], list[str]]:
    """Declared parameters with their defaults, and what is wrong with them (AI Core knows only strings)."""
    params, problems = {}, []
    for param in template.get("spec", {}).get("inputs", {}).get("parameters", []):
        name = param.get("name")
        if param.get("type") != "string":
            problems.append(f"parameter {name}: type is {param.get('type')!r}, AI Core allows only 'string'")
        if not isinstance(param.get("default", ""), str):
            problems.append(f"parameter {name}: default is not a string")
        params[name] = param.get("default", "")
    return params, problems


def placeholder_problems(text: str, params: dict[str, str], artifacts: set[str]) -> list[str]:
    problems = []
    for expression in PLACEHOLDER.findall(text):
        kind, _, name = expression.rpartition(".")
        declared = params if kind == "inputs.parameters" else artifacts if kind == "inputs.artifacts" else ()
        if name not in declared:
            problems.append(f"placeholder {{{{{expression}}}}} names no declared input")
    return problems


def fill(text: str, params: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: params.get(m.group(1).rpartition(".")[2], "placeholder"), text)


def container_problems(container: dict) -> list[str]:
    problems = []
    if container.get("name") != "kserve-container":
        problems.append("the container is not named kserve-container")
    if [p.get("containerPort") for p in container.get("ports", [])] != [8080]:
        problems.append("the container does not expose exactly port 8080")
    token = next((e for e in container.get("env", []) if e.get("name") == "HF_TOKEN"), {})
    ref = token.get("valueFrom", {}).get("secretKeyRef", {})
    if "value" in token or not ref.get("name") or not ref.get("key"):
        problems.append("HF_TOKEN does not come from a generic secret (secretKeyRef)")
    return problems


def predictor_problems(predictor: dict) -> list[str]:
    problems = []
    min_replicas, max_replicas = predictor.get("minReplicas"), predictor.get("maxReplicas", 1)
    if not isinstance(min_replicas, int) or min_replicas < 1:
        problems.append("minReplicas must be >= 1: models live on the container's disk")
    elif not isinstance(max_replicas, int) or max_replicas < min_replicas:
        problems.append("maxReplicas must be an integer >= minReplicas")
    if not predictor.get("imagePullSecrets"):
        problems.append("no imagePullSecrets")
    containers = predictor.get("containers", [])
    if len(containers) != 1:
        return problems + ["the predictor needs exactly one container"]
    problems += container_problems(containers[0])
    pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kserve-predictor"}, "spec": pod_spec}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor-pod.yaml"
        path.write_text(yaml.safe_dump(pod))
        problems += [f"predictor as a Pod: {p}" for p in kubernetes_validate_problems(path)]
    return problems


def template_spec_problems(template: dict, params: dict[str, str]) -> list[str]:
    inner = template.get("spec", {}).get("template", {})
    if inner.get("apiVersion") != "serving.kserve.io/v1beta1":
        return ["spec.template.apiVersion is not serving.kserve.io/v1beta1"]
    labels, spec = inner.get("metadata", {}).get("labels"), inner.get("spec")
    if not (isinstance(labels, str) and isinstance(spec, str) and "\n" in spec):
        return ["spec.template.metadata.labels and spec.template.spec must be multi-line strings"]
    problems = []
    plan = re.search(r"ai\.sap\.com/resourcePlan:\s*\"?\{\{\s*inputs\.parameters\.(\w+)", labels)
    if plan is None:
        problems.append("ai.sap.com/resourcePlan is not set from a parameter")
    filled_labels = yaml.safe_load(fill(labels, params))
    if not isinstance(filled_labels, dict) or not filled_labels.get("ai.sap.com/resourcePlan"):
        problems.append("labels do not set ai.sap.com/resourcePlan")
    filled = yaml.safe_load(fill(spec, params))
    if not isinstance(filled, dict) or set(filled) != {"predictor"}:
        return problems + ["spec must hold exactly a predictor"]
    return problems + predictor_problems(filled["predictor"])


def serving_template_problems(path: Path) -> list[str]:
    text = path.read_text()
    template, root = yaml.safe_load(text), yaml.compose(text)
    params, problems = parameter_problems(template)
    artifacts = {a.get("name") for a in template.get("spec", {}).get("inputs", {}).get("artifacts", [])}
    problems += metadata_problems(template, root) + placeholder_problems(text, params, artifacts)
    return problems + template_spec_problems(template, params)


def test_serving_template_is_accepted():
    assert serving_template_problems(TEMPLATE) == []


def test_serving_template_documents_async_pulls():
    text = TEMPLATE.read_text()
    assert '"async": true' in text and "300 s" in text


@pytest.mark.parametrize("old, new", [
    ('image: "{{inputs.parameters.image}}"', 'image: "{{inputs.parameters.imageName}}"'),
    ("      - name: maxReplicas\n        type: string\n", "      - name: maxReplicas\n        type: int\n"),
    ('ai.sap.com/version: "0.1.0"', "ai.sap.com/version: 0.1"),
    ("- name: kserve-container", "- name: proxy"),
    ("minReplicas: 1", "minReplicas: 0"),
    ('image: "{{inputs.parameters.image}}"\n', 'image: "{{inputs.parameters.image}}"\n            imagePullPolice: Always\n'),
    ("                valueFrom:\n                  secretKeyRef:\n"
     "                    name: \"{{inputs.parameters.hfTokenSecret}}\"\n"
     "                    key: HF_TOKEN\n", "                value: hf_plaintext\n"),
    ('apiVersion: "serving.kserve.io/v1beta1"', 'apiVersion: "serving.kubeflow.org/v1beta1"'),
    ('    executables.ai.sap.com/name: "gguf-proxy"\n', ""),
    ('ai.sap.com/resourcePlan: "{{inputs.parameters.resourcePlan}}"', "ai.sap.com/resourcePlan: infer.s"),
    ('        imagePullSecrets:\n          - name: "{{inputs.parameters.imagePullSecret}}"\n', ""),
    ("              - containerPort: 8080\n", "              - containerPort: \"8080\"\n"),
    ("        terminationGracePeriodSeconds: 60\n", "        terminationGracePeriod: 60\n"),
], ids=["undeclared-placeholder", "int-parameter", "unquoted-version", "container-name", "scale-to-zero",
        "unknown-container-field", "plaintext-token", "kubeflow-api", "no-executable-name",
        "fixed-resource-plan", "no-pull-secret", "port-as-string", "unknown-podspec-field"])
def test_serving_template_check_rejects_broken_copy(tmp_path, old, new):
    broken = break_text(TEMPLATE, tmp_path, old, new)
    assert serving_template_problems(broken) != []


def container_env(params: dict[str, str], name: str, template: Path = TEMPLATE) -> str | None:
    """The value of env `name` in the predictor's container, with the template filled from `params`."""
    spec = yaml.safe_load(template.read_text())["spec"]["template"]["spec"]
    container = yaml.safe_load(fill(spec, params))["predictor"]["containers"][0]
    return next((e.get("value") for e in container.get("env", []) if e.get("name") == name), None)


def manifest_env(params: dict[str, str]) -> str | None:
    """MODELS_MANIFEST_JSON of the predictor's container, with the template filled from `params`."""
    return container_env(params, "MODELS_MANIFEST_JSON")


def test_the_manifest_comes_from_a_string_parameter_as_models_manifest_json():
    """AI Core has no ConfigMaps: docker/start.sh writes MODELS_MANIFEST_JSON to a file for MODELS_MANIFEST."""
    params, _ = parameter_problems(yaml.safe_load(TEMPLATE.read_text()))
    assert params.get("modelsManifest") == ""  # declared, and empty declares nothing
    manifest = '{"models": [{"model": "acme/tiny-GGUF:Q4_K_M", "verify": "load", "sha256": "' + "a" * 64 + '"}]}'
    assert manifest_env({**params, "modelsManifest": manifest}) == manifest  # the JSON's quotes survive
    assert manifest_env(params) == ""
    assert "MODELS_MANIFEST_JSON" in START.read_text()



def hf_mirrors_problems(template: Path) -> list[str]:
    """The string parameter hfMirrors, empty by default, reaches HF_MIRRORS as the proxy reads it."""
    from proxy.settings import Settings

    params, _ = parameter_problems(yaml.safe_load(template.read_text()))
    if params.get("hfMirrors") != "":
        return ["no parameter hfMirrors with an empty default (no mirror unless one is named)"]
    mirrors = "http://gguf-model-cache:8080,https://mirror.example.com"
    problems = []
    for value, expected in ((mirrors, ("http://gguf-model-cache:8080", "https://mirror.example.com")), ("", ())):
        env = container_env({**params, "hfMirrors": value}, "HF_MIRRORS", template)
        if env is None or Settings.from_env({"HF_MIRRORS": env}).hf_mirrors != expected:
            problems.append(f"hfMirrors={value!r} reaches the container as HF_MIRRORS={env!r}")
    return problems


def test_hf_mirrors_come_from_a_string_parameter():
    """AI Core has no shared volume: replicas share pulls only through a model cache named in hfMirrors."""
    assert hf_mirrors_problems(TEMPLATE) == []


@pytest.mark.parametrize("old, new", [
    ('value: "{{inputs.parameters.hfMirrors}}"', 'value: "http://gguf-model-cache:8080"'),
    ("      - name: hfMirrors\n        type: string\n        default: \"\"\n",
     "      - name: hfMirrors\n        type: string\n        default: \"http://cache:8080\"\n"),
    ("              - name: HF_MIRRORS\n", "              - name: HF_MIRROR\n"),
], ids=["fixed-value", "non-empty-default", "wrong-env-name"])
def test_hf_mirrors_check_rejects_broken_copy(tmp_path, old, new):
    assert hf_mirrors_problems(break_text(TEMPLATE, tmp_path, old, new)) != []
