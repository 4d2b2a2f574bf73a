"""The one rule for credentials in a transfer: headers go only to the host they are scoped to, every hop."""
from __future__ import annotations

import requests
import responses

from proxy.sources.remote import Fetch

HUB, CDN = "https://hub.example:8443", "https://cdn.example"
TOKEN = {"Authorization": "Bearer hf_secret"}


@responses.activate
def test_scoped_headers_follow_redirects_only_to_their_own_host():
    responses.get(f"{HUB}/resolve/m.gguf", status=302, headers={"Location": "/mirror/m.gguf"})
    responses.get(f"{HUB}/mirror/m.gguf", status=307, headers={"Location": f"{CDN}/signed/m.gguf?sig=x"})
    responses.get(f"{CDN}/signed/m.gguf", body=b"gguf")
    fetch = Fetch(f"{HUB}/resolve/m.gguf", {"hub.example:8443": TOKEN})

    with requests.Session() as session:
        response = fetch.get(session, fetch.url, {"Range": "bytes=0-3"}, timeout=(1, 1))

    assert response.content == b"gguf" and response.url.startswith(f"{CDN}/signed/")
    sent = [(call.request.url, call.request.headers.get("Authorization"), call.request.headers.get("Range"))
            for call in responses.calls]
    assert [auth for _, auth, _ in sent] == ["Bearer hf_secret", "Bearer hf_secret", None]
    assert all(rng == "bytes=0-3" for _, _, rng in sent)


def test_the_fetch_never_shows_its_credentials():
    assert "hf_secret" not in repr(Fetch(f"{HUB}/resolve/m.gguf", {"hub.example:8443": TOKEN}))
