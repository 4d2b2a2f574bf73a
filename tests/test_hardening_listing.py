"""GET /v1/api/files for a keyless caller when PROXY_API_KEY is set (issue 28, item 7): it shows what the Hub
shows an anonymous caller (never a private repo through the proxy's HF_TOKEN), and it makes the proxy connect to
no host the request names (a registry reference): 401 before any connection."""
from __future__ import annotations

import socket

from tests.pull_fixtures import REPO, TOKEN

KEY = "listing-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PRIVATE = "acme/private-GGUF"


def test_a_keyless_caller_does_not_see_a_private_repo_through_our_token(make_app, hub, make_gguf):
    hub.add_repo(PRIVATE, files={"m.Q4_K_M.gguf": make_gguf("m.Q4_K_M.gguf")}, private=True, readers={TOKEN})
    hub.add_repo(REPO, files={"m.Q4_K_M.gguf": make_gguf("x.gguf")})
    client = make_app(api_key=KEY, hf_token=TOKEN).test_client()

    keyless = client.get(f"/v1/api/files?model={PRIVATE}")
    assert keyless.status_code == 404 and keyless.get_json()["code"] == "repo_not_found", keyless.get_json()
    assert "sha256" not in keyless.get_data(as_text=True)
    assert client.get(f"/v1/api/files?model={PRIVATE}", headers=AUTH).status_code == 200
    assert client.get(f"/v1/api/files?model={REPO}").get_json()["recommended"] == "m.Q4_K_M.gguf"


def test_a_keyless_listing_connects_to_no_host_it_names(make_app):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    client = make_app(api_key=KEY, insecure_registries=(f"127.0.0.1:{port}",)).test_client()
    try:
        answer = client.get(f"/v1/api/files?model=oci://127.0.0.1:{port}/library/model:latest")
        assert answer.status_code == 401 and answer.get_json()["code"] == "auth_required", answer.get_json()
        try:
            listener.accept()[0].close()
            connected = True
        except socket.timeout:
            connected = False
        assert not connected, "the proxy connected to the host a keyless request named"
    finally:
        listener.close()
