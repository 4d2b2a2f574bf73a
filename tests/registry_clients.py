"""A registry's clients as the registry tests play them: Docker config.json credentials (an htpasswd user, an
auths file, a Basic entry), models installed from the fake Hub to push, and a push read to its end."""
from __future__ import annotations

import base64
import json

from scripts.gguf_files import sha256_file
from tests.pull_fixtures import REPO, ndjson, pull

USER, PASSWORD = "puller", "s3cret-pw"


def auth_file(tmp_path, entries: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": entries}))
    return str(path)


def basic_entry(user: str, password: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def install(hub, client, make_gguf, files: dict[str, int]) -> dict[str, str]:
    """Pull files from the fake Hub's REPO; their sha256 by name."""
    sources = {name: make_gguf(name, size) for name, size in files.items()}
    hub.add_repo(REPO, files=sources)
    for name in files:
        assert pull(client, model=REPO, filename=name)[-1]["status"] == "complete"
    return {name: sha256_file(path) for name, path in sources.items()}


def push(client, **body) -> list[dict]:
    response = client.post("/v1/api/push", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return ndjson(response)
