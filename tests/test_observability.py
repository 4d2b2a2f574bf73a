"""GET /metrics moves by the right amounts; GET /openapi.json is valid and matches the routes."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import create_app
from proxy.errors import STATUS_BY_CODE
from proxy.settings import Settings
from scripts.gguf_files import random_gguf
from tests.fakes.hub import FakeHub, Fault
from tests.helpers import free_port

FILE = "tiny.Q4_K_M.gguf"
SIZE = 300_000


@pytest.fixture
def hub(tmp_path):
    with FakeHub() as hub:
        hub.add_repo("owner/tiny", files={FILE: random_gguf(tmp_path / FILE, SIZE, seed=3)})
        hub.add_repo("owner/other", files={"other.Q4_K_M.gguf": random_gguf(tmp_path / "other.gguf", SIZE, seed=4)})
        yield hub


@pytest.fixture
def client(tmp_path, hub):
    settings = Settings(models_dir=str(tmp_path / "models"), hf_endpoint=hub.url, pull_chunk_bytes=64 * 1024,
                        pull_backoff_base_s=0.01, progress_interval_s=0.01,
                        backend_url=f"http://127.0.0.1:{free_port()}")
    return create_app(settings).test_client()


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_pull_its_bytes_and_a_failed_pull(client, hub):
    before = scrape(client)
    assert client.post("/v1/api/pull", json={"model": "owner/tiny", "stream": False}).status_code == 200
    hub.faults.add(Fault.wrong_bytes(times=None), file=FILE)
    client.delete("/v1/api/delete", json={"filename": FILE})
    failed = client.post("/v1/api/pull", json={"model": "owner/tiny", "stream": False})
    assert failed.json["code"] == "checksum_mismatch"
    client.post("/v1/api/pull", json={"model": "not a repo"})
    after = scrape(client)

    assert value(after, "proxy_pulls_total", outcome="complete", code="") - \
        value(before, "proxy_pulls_total", outcome="complete", code="") == 1
    assert value(after, "proxy_pulls_total", outcome="error", code="checksum_mismatch") == 1
    assert value(after, "proxy_pulls_total", outcome="rejected", code="invalid_repo_id") == 1
    assert value(after, "proxy_pull_bytes_total") - value(before, "proxy_pull_bytes_total") == 2 * SIZE
    assert value(after, "proxy_pull_duration_seconds_count", outcome="complete") == 1
    assert value(after, "proxy_http_requests_total", route="/v1/api/pull", method="POST", status="200") == 1
    assert value(after, "proxy_backend_up") == 0  # nothing listens on the backend port
    assert value(after, "proxy_pulls_running") == 0


def test_metrics_content_type_names_the_text_format_and_one_charset(client):
    assert client.get("/metrics").headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_metric_labels_carry_no_raw_paths_or_queries(client):
    client.get("/v1/api/pulls/some-unbounded-id?token=secret")
    client.get("/no/such/path?sig=abc")
    text = client.get("/metrics").get_data(as_text=True)
    assert "secret" not in text and "sig=" not in text and "some-unbounded-id" not in text
    assert 'route="/v1/api/pulls/<job_id>"' in text and 'route="unmatched"' in text


def test_openapi_document_is_valid_and_lists_every_route_and_code(client):
    doc = client.get("/openapi.json").json
    validate(doc)
    app_routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule): rule.methods - {"HEAD", "OPTIONS"}
        for rule in client.application.url_map.iter_rules() if rule.endpoint != "static"
    }
    documented = {path: {m.upper() for m in ops} - {"HEAD"} for path, ops in doc["paths"].items()}
    assert documented == app_routes
    assert set(doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]) == set(STATUS_BY_CODE)


def test_responses_match_their_documented_schemas(client):
    doc = client.get("/openapi.json").json
    complete = client.post("/v1/api/pull", json={"model": "owner/tiny", "stream": False})
    streamed = client.post("/v1/api/pull", json={"model": "owner/tiny"})
    calls = [
        ("/v1/api/pull", "post", complete),
        ("/v1/api/pulls", "get", client.get("/v1/api/pulls")),
        ("/v1/api/files", "get", client.get("/v1/api/files?model=owner/tiny")),
        ("/v1/api/models", "get", client.get("/v1/api/models")),
        ("/v1/models", "get", client.get("/v1/models")),
        ("/v1/api/pull", "post", client.post("/v1/api/pull", json={"model": "x"})),
        ("/v1/health", "get", client.get("/v1/health")),
    ]
    for path, method, response in calls:
        documented = doc["paths"][path][method]["responses"][str(response.status_code)]
        schema = documented["content"]["application/json"]["schema"]
        jsonschema.validate(response.json, {**schema, "components": doc["components"]})
    fresh = client.post("/v1/api/pull", json={"model": "owner/other"})  # every stage of a download
    events = [json.loads(line) for answer in (streamed, fresh) for line in answer.get_data(as_text=True).splitlines()]
    event_schema = {"$ref": "#/components/schemas/PullEvent", "components": doc["components"]}
    for event in events:
        jsonschema.validate(event, event_schema)
    assert {"starting", "downloading", "verifying", "complete"} <= {event["status"] for event in events}
    assert complete.status_code == 200 and events[-1]["status"] == "complete" and not events[-1].get("cached")
