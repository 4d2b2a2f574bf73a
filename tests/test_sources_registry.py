"""Sources by scheme: adding one is a module (here, TestSource below) and one `register` line; pulls, provenance
and the model listing then treat it as they treat the registries, and the Hub stays the source of plain names."""
from __future__ import annotations

import hashlib
import json

import pytest

from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.provenance import ProvenanceStore
from proxy.services import services_of
from proxy.sources.base import Wanted
from core.naming import HUB_SCHEME
from proxy.sources.reference import CANONICAL, REGISTRY_SCHEMES
from proxy.sources.remote import Fetch, RemoteFile, RepoFiles, host_of
from proxy.sources.router import SourceRouter
from tests.pull_fixtures import REPO, KiB, hub, make_app, make_gguf, models_dir, pull, pull_error  # noqa: F401

FILE = "tiny.Q4_K_M.gguf"
COMMIT = "c" * 40


class TestSource:
    """A source of its own scheme, `test://owner/name`, whose one file's bytes come from the fake Hub's CDN."""

    __test__ = False  # not a pytest class

    def __init__(self, hub, data: bytes):
        self.host, self._hub, self._data = host_of(hub.url), hub, data

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        remote = RemoteFile(FILE, len(self._data), hashlib.sha256(self._data).hexdigest(),
                            Fetch(self._hub.resolve_url(REPO, FILE)))
        return RepoFiles(repo, revision, COMMIT, (remote,), source=repo, source_host=self.host)

    def resolve(self, wanted: Wanted) -> RepoFiles:
        if wanted.repo != "test://acme/tiny":
            raise ProxyError(ErrorCode.REPO_NOT_FOUND, f"no {wanted.repo} here")
        return self.list_files(wanted.repo, wanted.revision)


def canonical_test_reference(reference: str) -> str:
    """Raises: ProxyError invalid_repo_id for a reference without owner/name."""
    if reference.count("/") != 3:
        raise ProxyError(ErrorCode.INVALID_REPO_ID, "a test:// reference is test://owner/name")
    return reference.lower()


@pytest.fixture
def registered(request, make_app, hub, make_gguf):
    source = make_gguf(FILE, 96 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    app = make_app()
    request.addfinalizer(lambda: CANONICAL.pop("test", None))  # the scheme table is the process's
    services_of(app).source.register("test", TestSource(hub, source.read_bytes()), canonical_test_reference)
    return app, source


def test_a_registered_source_is_pulled_from_by_its_scheme(registered):
    app, source = registered
    client = app.test_client()

    final = pull(client, model="test://Acme/Tiny")[-1]

    assert final["status"] == "complete" and final["filename"] == FILE
    assert final["source"] == "test://acme/tiny" and final["digest"] == COMMIT, "recorded by its reference"
    record = services_of(app).store.provenance.get(FILE)
    assert (record.source, record.scheme) == ("test://acme/tiny", "test")
    assert pull(client, model="test://acme/tiny")[-1]["cached"] is True
    listed = {m["id"]: m for m in client.get("/v1/api/models").get_json()["models"]}
    assert listed[FILE.removesuffix(".gguf")]["source"] == "test://acme/tiny"


def test_its_references_parse_as_it_says_and_other_schemes_stay_unknown(registered):
    client = registered[0].test_client()

    assert pull_error(client, 400, "invalid_repo_id", model="test://tiny")["error"].startswith("a test://")
    assert pull_error(client, 404, "repo_not_found", model="test://acme/other")
    assert "test://..." in pull_error(client, 400, "unsupported_source", model="nope://acme/tiny")["error"]


def test_the_hub_serves_names_without_a_scheme():
    hub_source, registries = object(), object()
    router = SourceRouter({HUB_SCHEME: hub_source, **dict.fromkeys(REGISTRY_SCHEMES, registries)})

    assert router.source_for("acme/tiny-GGUF") is hub_source
    assert router.source_for("ollama://registry.ollama.ai/library/gemma3:270m") is registries
    with pytest.raises(ProxyError) as caught:
        router.source_for("nope://x/y")
    assert caught.value.code == ErrorCode.UNSUPPORTED_SOURCE


def test_provenance_reads_a_record_naming_no_source_as_the_hubs(tmp_path):
    written = {"filename": FILE, "repo": REPO, "repo_path": FILE, "revision": "main", "commit": COMMIT,
               "size": 1, "sha256": None, "source_host": "huggingface.co", "pulled_at": "2025-01-01T00:00:00+00:00"}
    path = tmp_path / "provenance.json"
    path.write_text(json.dumps({"models": [written, {**written, "filename": "b.gguf",
                                                     "source": "oci://r.example/models/b:v1"}]}))
    records = ProvenanceStore(path).all()

    assert (records[FILE].scheme, records["b.gguf"].scheme) == (HUB_SCHEME, "oci")
