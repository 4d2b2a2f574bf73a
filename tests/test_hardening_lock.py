"""`python -m proxy lock` resolves every source a manifest may name: Hub repos, `oci://` and `ollama://`
references at a real registry (issue 20, item 8)."""
from __future__ import annotations

import hashlib

import yaml

from proxy.cli.commands import main
from tests.pull_fixtures import hub, make_gguf  # noqa: F401
from scripts.registry import DMR_GGUF, OLLAMA_MODEL
from tests.registry import registry  # noqa: F401

HUB_REPO, HUB_FILE = "acme/alpha-GGUF", "alpha.Q4_K_M.gguf"


def test_lock_resolves_hub_oci_and_ollama_entries(hub, registry, make_gguf, tmp_path):
    files = {name: make_gguf(name, 64 * 1024) for name in (HUB_FILE, "tiny.gguf", "gemma.gguf")}
    sha = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    hub.add_repo(HUB_REPO, files={HUB_FILE: files[HUB_FILE]})
    oci_digest = registry.publish("models/tiny", "v1", [(files["tiny.gguf"], DMR_GGUF, None)])
    ollama_digest = registry.publish("library/gemma3", "270m", [(files["gemma.gguf"], OLLAMA_MODEL, None)])
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  - model: {HUB_REPO}:Q4_K_M  # from the Hub\n"
                    f"  - model: oci://{registry.host}/models/tiny:v1\n"
                    f"  - model: ollama://{registry.host}/gemma3:270m  # the README's kind of entry\n")

    code = main(["lock", str(path)], env={"HF_ENDPOINT": hub.url, "INSECURE_REGISTRIES": registry.host,
                                          "DOCKER_CONFIG": str(tmp_path)})

    assert code == 0
    text = path.read_text()
    assert "# from the Hub" in text and "# the README's kind of entry" in text
    hub_entry, oci_entry, ollama_entry = yaml.safe_load(text)["models"]
    assert (hub_entry["sha256"], hub_entry["revision"]) == (sha[HUB_FILE], hub.commit_sha(HUB_REPO))
    assert (oci_entry["sha256"], oci_entry["revision"]) == (sha["tiny.gguf"], oci_digest)
    assert (ollama_entry["sha256"], ollama_entry["revision"]) == (sha["gemma.gguf"], ollama_digest)
    assert oci_entry["filename"] == "tiny-v1.gguf" and ollama_entry["filename"] == "gemma3-270m.gguf"
