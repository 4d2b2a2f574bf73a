"""Pulls from ollama:// and oci:// references against a real distribution registry (tests/registry.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from proxy.declared.preload import parse_preload_entry
from proxy.services import services_of
from scripts.gguf_files import sha256_file
from tests.fakes.relay import FaultRelay
from tests.helpers import REPO_ROOT, unique
from tests.pull_fixtures import KiB, MiB, pull, pull_error, wait_until
from scripts.registry import DMR_GGUF, DOCKER_MANIFEST, OLLAMA_MODEL, TITLE
from tests.registry import registry  # noqa: F401 - registry: the fixture


@pytest.fixture
def registry_app(make_app, registry, tmp_path):
    def make(**overrides):
        values = dict(insecure_registries=(registry.host,), docker_config=str(tmp_path / "no-docker"))
        return make_app(**{**values, **overrides})
    return make


def test_ollama_reference_pulls_the_model_layer_named_after_name_and_tag(registry, registry_app, make_gguf, models_dir):
    model = make_gguf("m.gguf", 96 * KiB)
    digest = registry.publish("library/tiny", "1b", [(model, OLLAMA_MODEL, None)], DOCKER_MANIFEST,
                              "application/vnd.docker.container.image.v1+json")
    lines = pull(registry_app().test_client(), model=f"ollama://{registry.host}/tiny:1b")
    complete = lines[-1]
    canonical = f"ollama://{registry.host}/library/tiny:1b"
    assert lines[0]["model"] == canonical
    assert complete["status"] == "complete", lines
    assert (complete["filename"], complete["source"], complete["digest"], complete["revision"]) == \
        ("tiny-1b.gguf", canonical, digest, digest)
    assert complete["sha256"] == sha256_file(model)
    assert (models_dir / "tiny-1b.gguf").read_bytes() == model.read_bytes()
    listed = registry_app().test_client().get("/v1/api/models").get_json()["models"]
    entry = next(m for m in listed if m["filename"] == "tiny-1b.gguf")
    assert (entry["source"], entry["digest"], entry["source_host"]) == (canonical, digest, registry.host), entry


def test_oci_artifact_takes_its_title_and_a_split_set_every_part(registry, registry_app, make_gguf, models_dir):
    parts = [make_gguf(f"big-0000{i}-of-00002.gguf", 64 * KiB) for i in (1, 2)]
    layers = [(p, DMR_GGUF, {TITLE: p.name}) for p in parts]
    digest = registry.publish("ai/big", "latest", layers)
    complete = pull(registry_app().test_client(), model=f"oci://{registry.host}/ai/big")[-1]
    assert complete["status"] == "complete", complete
    assert complete["files"] == [p.name for p in parts] and complete["digest"] == digest
    assert complete["source"] == f"oci://{registry.host}/ai/big:latest"
    for part in parts:
        assert (models_dir / part.name).read_bytes() == part.read_bytes()


def test_digest_reference_names_the_file_with_twelve_hex_digits(registry, registry_app, make_gguf):
    model = make_gguf("d.gguf")
    digest = registry.publish("ai/pinned", "v1", [(model, DMR_GGUF, {TITLE: "../evil.gguf"})])
    complete = pull(registry_app().test_client(), model=f"oci://{registry.host}/ai/pinned@{digest}")[-1]
    assert complete["filename"] == f"pinned-{digest[7:19]}.gguf", complete
    assert complete["revision"] == digest


def test_corrupted_blob_is_checksum_mismatch_and_nothing_installed(registry, registry_app, make_gguf, models_dir):
    repo = unique("ai/corrupt")  # bytes and repository new on each run: the module's registry outlives the test
    model = make_gguf("c.gguf", 96 * KiB, seed=uuid.uuid4().int >> 64)
    registry.publish(repo, "v1", [(model, DMR_GGUF, {TITLE: "corrupt.gguf"})])
    blob = registry.blob_path("sha256:" + sha256_file(model))
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0xFF
    blob.write_bytes(bytes(data))
    lines = pull(registry_app().test_client(), model=f"oci://{registry.host}/{repo}:v1")
    assert lines[-1]["status"] == "error" and lines[-1]["code"] == "checksum_mismatch", lines[-1]
    assert not (models_dir / "corrupt.gguf").exists()


def test_blob_cut_mid_body_resumes_with_range_fetching_under_1_2x(registry, registry_app, make_gguf, models_dir):
    size, part, cut, cuts = 4 * MiB, 2 * MiB, 1 * MiB, 2
    model = make_gguf("cut.gguf", size)
    registry.publish("ai/cut", "v1", [(model, DMR_GGUF, {TITLE: "cut.gguf"})])
    host, port = registry.host.split(":")
    with FaultRelay((host, int(port)), cut_after_bytes=cut, cuts=cuts) as relay:
        app = registry_app(insecure_registries=(relay.host,), pull_connections=2, pull_chunk_bytes=part)
        complete = pull(app.test_client(), model=f"oci://{relay.host}/ai/cut:v1")[-1]
    assert complete["status"] == "complete", complete
    assert complete["sha256"] == sha256_file(model) == sha256_file(models_dir / "cut.gguf")
    assert relay.stats.cuts == cuts
    # Each resumed request starts where its cut part stopped, not at a part boundary.
    resumed = [r for r in relay.stats.ranges if r and int(r.split("=")[1].split("-")[0]) % part]
    assert len(resumed) == cuts, relay.stats.ranges
    # The cuts forwarded cuts * cut = 0.5x the blob before breaking; a pull that fetched any of it again
    # (a part restarted from its start, or the whole blob without Range) would be at 1.5x or more.
    assert size <= relay.stats.body_bytes < 1.2 * size, relay.stats.body_bytes
    assert size + cuts * cut >= 1.2 * size


def test_unknown_repository_tag_and_no_gguf_layer_fail_before_streaming(registry, registry_app, make_gguf):
    client = registry_app().test_client()
    pull_error(client, 404, "repo_not_found", model=f"oci://{registry.host}/ai/nothing-here:v1")
    registry.publish("ai/tagged", "v1", [(make_gguf("t.gguf"), DMR_GGUF, None)])
    pull_error(client, 404, "revision_not_found", model=f"oci://{registry.host}/ai/tagged:v2")
    registry.publish("ai/nogguf", "v1", [(make_gguf("n.gguf"), "application/octet-stream", None)])
    pull_error(client, 404, "file_not_found", model=f"oci://{registry.host}/ai/nogguf:v1")


def test_registry_without_tls_fails_naming_insecure_registries(registry, registry_app):
    error = pull_error(registry_app(insecure_registries=()).test_client(), 502, "hub_unavailable",
                       model=f"oci://{registry.host}/ai/tagged:v1")
    assert "INSECURE_REGISTRIES" in error["error"]


def test_allowed_repos_patterns_with_schemes_match_the_canonical_reference(registry, registry_app, make_gguf):
    registry.publish("ai/allowed", "v1", [(make_gguf("a.gguf"), DMR_GGUF, None)])
    client = registry_app(allowed_repos=(f"oci://{registry.host}/ai/allowed:*", "*")).test_client()
    assert pull(client, model=f"oci://{registry.host}/ai/allowed:v1")[-1]["status"] == "complete"
    pull_error(client, 403, "repo_not_allowed", model=f"oci://{registry.host}/ai/other:v1")
    pull_error(client, 403, "repo_not_allowed", model=f"ollama://{registry.host}/allowed:v1")


@pytest.mark.parametrize("model, code", [
    ("s3://bucket/model.gguf", "unsupported_source"),
    ("docker://x/y", "unsupported_source"),
    ("oci://no-host-here", "invalid_repo_id"),
    ("oci://registry.example.com/UPPER:v1", "invalid_repo_id"),
    ("ollama://a/b/c", "invalid_repo_id"),
    ("ollama://gemma3:bad tag", "invalid_repo_id"),
    ("oci://registry.example.com/x@sha256:abc", "invalid_repo_id"),
])
def test_malformed_references_are_refused(client, model, code):
    pull_error(client, 400, code, model=model)


def test_preload_and_the_cli_take_registry_references(registry, registry_app, make_gguf, models_dir, tmp_path):
    model = make_gguf("pre.gguf")
    registry.publish("ai/preloaded", "v1", [(model, DMR_GGUF, {TITLE: "preloaded.gguf"})])
    reference = f"oci://{registry.host}/ai/preloaded:v1"
    assert parse_preload_entry(reference).repo == reference
    app = registry_app(preload_models=(reference,))
    wait_until(lambda: (models_dir / "preloaded.gguf").exists(), what="the preload to install")
    registry.publish("ai/cli", "v1", [(make_gguf("cli.gguf"), DMR_GGUF, {TITLE: "cli.gguf"})])
    env = {"MODELS_DIR": str(tmp_path / "cli-models"), "INSECURE_REGISTRIES": registry.host,
           "DOCKER_CONFIG": str(tmp_path / "no-docker")}
    result = subprocess.run([sys.executable, "-m", "proxy", "pull", "--local", f"oci://{registry.host}/ai/cli:v1"],
                            cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli-models" / "cli.gguf").is_file()
    assert services_of(app).pulls.jobs()


def test_a_pulled_reference_names_the_model_in_its_short_form_too():
    from proxy.pulls.pulled_names import resolve_pulled_name

    installed = [{"id": "gemma3-270m", "filename": "gemma3-270m.gguf",
                  "source": "ollama://registry.ollama.ai/library/gemma3:270m"}]
    assert resolve_pulled_name(installed, "ollama://gemma3:270m") == "gemma3-270m"
