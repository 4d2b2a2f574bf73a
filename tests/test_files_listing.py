"""GET /v1/api/files: it obeys ALLOWED_REPOS as a pull does."""
from __future__ import annotations

from tests.pull_fixtures import REPO


def test_files_of_a_repo_outside_allowed_repos_is_repo_not_allowed(make_app, hub, make_gguf):
    hub.add_repo("other/model-GGUF", files={"m.Q4_K_M.gguf": make_gguf("m.Q4_K_M.gguf")})
    hub.add_repo(REPO, files={"m.Q4_K_M.gguf": make_gguf("x.gguf")})
    client = make_app(allowed_repos=("ACME/*",)).test_client()

    response = client.get("/v1/api/files?model=other/model-GGUF")

    assert response.status_code == 403 and response.get_json()["code"] == "repo_not_allowed", response.get_json()
    assert hub.requests_to("/api/models/other") == [], "refused before asking the Hub"
    assert client.get(f"/v1/api/files?model={REPO}").get_json()["recommended"] == "m.Q4_K_M.gguf"
