"""`python -m proxy lock FILE`: pins resolved at the source and written back in the file's own format."""
from __future__ import annotations

import hashlib
import json

import yaml

from proxy.cli.commands import main
from tests.pull_fixtures import hub, make_app, make_gguf, models_dir, wait_until  # noqa: F401

A, B = "acme/alpha-GGUF", "acme/split-GGUF"
FILE_A = "alpha.Q4_K_M.gguf"
PARTS = [f"big-Q8_0-0000{i}-of-00002.gguf" for i in (1, 2)]
YAML = """\
# declared models of the team
models:
  - model: acme/alpha-GGUF:Q4_K_M   # the small one
    verify: checksum
  # the split one
  - model: acme/split-GGUF
    quant: Q8_0
"""


def add_repos(hub, make_gguf) -> dict:
    files = {FILE_A: make_gguf(FILE_A, 64 * 1024), **{p: make_gguf(p, 64 * 1024) for p in PARTS}}
    hub.add_repo(A, files={FILE_A: files[FILE_A]})
    hub.add_repo(B, files={p: files[p] for p in PARTS})
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}


def test_lock_writes_commit_and_sha256_into_yaml_keeping_comments_and_order(hub, make_gguf, tmp_path, capsys):
    sha = add_repos(hub, make_gguf)
    path = tmp_path / "models.yaml"
    path.write_text(YAML)
    assert main(["lock", str(path)], env={"HF_ENDPOINT": hub.url}) == 0
    text = path.read_text()
    assert "# declared models of the team" in text and "# the small one" in text and "# the split one" in text
    [alpha, split] = yaml.safe_load(text)["models"]
    assert alpha == {"model": "acme/alpha-GGUF:Q4_K_M", "verify": "checksum", "filename": FILE_A,
                     "revision": hub.commit_sha(A), "sha256": sha[FILE_A]}
    assert split["revision"] == hub.commit_sha(B) and split["quant"] == "Q8_0"
    assert split["files"] == [{"filename": p, "sha256": sha[p]} for p in PARTS]
    assert main(["lock", str(path)], env={"HF_ENDPOINT": hub.url}) == 0  # again: pins replaced, not doubled
    assert path.read_text() == text


def test_lock_keeps_json_as_json(hub, make_gguf, tmp_path):
    sha = add_repos(hub, make_gguf)
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [{"model": A}]}))
    assert main(["lock", str(path)], env={"HF_ENDPOINT": hub.url}) == 0
    assert json.loads(path.read_text()) == {"models": [{"model": A, "filename": FILE_A,
                                                        "revision": hub.commit_sha(A), "sha256": sha[FILE_A]}]}


def test_lock_names_what_it_could_not_resolve_and_writes_nothing(hub, make_gguf, tmp_path, capsys):
    add_repos(hub, make_gguf)
    path = tmp_path / "models.yaml"
    path.write_text(YAML + "  - model: acme/missing-GGUF\n")
    before = path.read_text()
    assert main(["lock", str(path)], env={"HF_ENDPOINT": hub.url}) == 1
    err = capsys.readouterr().err
    assert "models[2] acme/missing-GGUF" in err and "repo_not_found" in err
    assert path.read_text() == before


def test_a_proxy_on_the_locked_file_keeps_the_pinned_bytes_when_the_hub_file_changes(
        hub, make_gguf, make_app, tmp_path, models_dir):
    sha = add_repos(hub, make_gguf)
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  - model: {A}\n")
    assert main(["lock", str(path)], env={"HF_ENDPOINT": hub.url}) == 0
    pinned_commit = hub.commit_sha(A)

    def entry(client):
        return wait_until(lambda: (m := client.get("/v1/api/manifest").get_json()["models"][0])["state"] in (
            "ready", "failed") and m, timeout_s=20, what="the entry settled")

    assert entry(make_app(models_manifest=str(path)).test_client())["state"] == "ready"
    hub.add_commit(A, {FILE_A: make_gguf("v2-" + FILE_A, 64 * 1024)})  # same name, new commit and bytes
    del hub.repo(A).commits[pinned_commit]  # the history rewritten: the pinned commit is gone
    client = make_app(models_manifest=str(path)).test_client()
    drift = entry(client)
    assert drift["state"] == "ready" and drift["code"] == "revision_not_found"
    assert drift["revision"] == pinned_commit and drift["sha256"] == sha[FILE_A]
    assert hashlib.sha256((models_dir / FILE_A).read_bytes()).hexdigest() == sha[FILE_A]
