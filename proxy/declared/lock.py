"""`python -m proxy lock FILE`: resolve every declared model at its source and write the pins (commit,
sha256 or each part's, the file a quant chose) back into the file, in its own format, same entries in the
same order.

YAML keeps its comments: PyYAML drops them on a round trip (ruamel.yaml would keep them but is not a
dependency), so the pins are written line by line. yaml.compose gives each entry's position; an existing pin
is replaced in place, a new one is added as lines under the entry at its keys' indentation. A flow-style
entry (`- {model: x}`) cannot be edited that way: then the whole file is dumped again and comments are lost.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.declared.manifest import Entry, parse_manifest
from proxy.retry import Backoff
from proxy.settings import Settings
from proxy.sources.base import Wanted
from proxy.sources.huggingface import HuggingFaceHub
from proxy.sources.reference import REGISTRY_SCHEMES
from proxy.sources.registry import RegistrySource
from proxy.sources.registry_auth import default_auth_file, load_auth_file
from proxy.sources.router import SourceRouter

log = logging.getLogger(__name__)
PIN_KEYS = ("filename", "revision", "sha256", "files")


class LockError(Exception):
    """Entries that could not be resolved; nothing was written."""


def lock_manifest(path: Path, source) -> list[dict]:
    """Resolve every entry and write its pins into `path`; the pins, in entry order.

    Raises:
        ManifestError: the file is malformed.
        LockError: one or more entries could not be resolved (each named); the file is left as it was.
    """
    text = path.read_text()
    entries = parse_manifest(text, path.name)
    pins, failures = [], []
    for entry in entries:
        try:
            pins.append(resolve_pins(entry, source))
        except ProxyError as err:
            failures.append(f"models[{entry.index}] {entry.model}: {err.message} [{err.code}]")
    if failures:
        raise LockError("; ".join(failures))
    path.write_text(write_json(text, pins) if _is_json(text, path.name) else write_yaml(text, pins))
    return pins


def lock_source(settings: Settings) -> SourceRouter:
    """Every source a manifest may name, as a pull reaches it: the Hub (HF_ENDPOINT, HF_TOKEN; the truth, not
    HF_MIRRORS) and the registries (REGISTRY_AUTH_FILE, INSECURE_REGISTRIES).

    Raises:
        ValueError: REGISTRY_AUTH_FILE is set and unreadable or malformed.
    """
    backoff = Backoff(settings.pull_backoff_base_s, settings.pull_backoff_max_s)
    credentials = load_auth_file(Path(settings.registry_auth_file), required=True) if settings.registry_auth_file \
        else load_auth_file(default_auth_file(settings.docker_config), required=False)
    registries = RegistrySource(credentials, settings.insecure_registries, settings.hub_timeout_s,
                                settings.pull_max_retries, backoff)
    hub = HuggingFaceHub(settings.hf_endpoint, settings.hf_token, settings.hub_timeout_s, settings.pull_max_retries,
                         backoff)
    return SourceRouter({naming.HUB_SCHEME: hub, **dict.fromkeys(REGISTRY_SCHEMES, registries)})


def resolve_pins(entry: Entry, source) -> dict:
    """Raises: ProxyError from the source (repo_not_found, revision_not_found, file_not_found, ...)."""
    request = entry.request()
    resolved = source.resolve(Wanted(request.repo, request.revision, request.filename, request.quant))
    missing = [f.filename for f in resolved.files if not f.sha256]
    if missing:
        raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the source gives no sha256 for {', '.join(missing)}")
    pins: dict[str, Any] = {"filename": resolved.files[0].filename, "revision": resolved.commit}
    if len(resolved.files) == 1:
        pins["sha256"] = resolved.files[0].sha256
    else:
        pins["files"] = [{"filename": f.filename, "sha256": f.sha256} for f in resolved.files]
    return pins


def write_json(text: str, pins: list[dict]) -> str:
    document = json.loads(text)
    for item, pin in zip(document["models"], pins):
        item.update(pin)
        if "files" in pin:
            item.pop("sha256", None)
    return json.dumps(document, indent=2) + "\n"


def write_yaml(text: str, pins: list[dict]) -> str:
    items = yaml.compose(text).value
    models = next(value for key, value in items if key.value == "models")
    if any(item.flow_style for item in models.value):
        log.warning("a flow-style entry: the file is written again without its comments")
        document = yaml.safe_load(text)
        for item, pin in zip(document["models"], pins):
            item.update(pin)
        return yaml.safe_dump(document, sort_keys=False)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for item, pin in reversed(list(zip(models.value, pins))):
        _pin_entry(lines, item, pin)
    return "".join(lines)


def _pin_entry(lines: list[str], item: yaml.MappingNode, pin: dict) -> None:
    """Edit one entry's lines: existing scalar pins in place, the others added below its last line."""
    indent = " " * item.value[0][0].start_mark.column
    existing = {key.value: (key, value) for key, value in item.value}
    end = max(_after(value) for _, value in item.value)
    added: list[str] = []
    for name in PIN_KEYS:
        if name not in pin:
            continue
        key, node = existing.get(name, (None, None))
        if isinstance(node, yaml.ScalarNode) and node.start_mark.line == node.end_mark.line and name != "files":
            line = lines[node.start_mark.line]
            lines[node.start_mark.line] = (line[:node.start_mark.column] + json.dumps(pin[name])
                                           + line[node.end_mark.column:])
            continue
        if key is not None:  # a list or a multi-line value: its lines go, the new value is added below
            lines[key.start_mark.line:_after(node)] = [""] * (_after(node) - key.start_mark.line)
        added += _block(indent, name, pin[name])
    lines[end:end] = added


def _after(node: yaml.Node) -> int:
    """The index of the first line after a node."""
    return node.end_mark.line if node.end_mark.column == 0 else node.end_mark.line + 1


def _block(indent: str, key: str, value: Any) -> list[str]:
    if key != "files":
        return [f"{indent}{key}: {json.dumps(value)}\n"]
    out = [f"{indent}files:\n"]
    for part in value:
        out.append(f"{indent}  - filename: {json.dumps(part['filename'])}\n")
        out.append(f"{indent}    sha256: {json.dumps(part['sha256'])}\n")
    return out


def _is_json(text: str, name: str) -> bool:
    return name.lower().endswith(".json") or text.lstrip().startswith("{")


def describe(pins: dict) -> str:
    return f"{naming.basename(pins['filename'])} at {pins['revision'][:12]}"
