"""One request to a registry repository with its credentials, for pulls and pushes alike: the Authorization
header goes to the registry's own host only, one `WWW-Authenticate` challenge is answered and the request sent
again, a TLS failure names INSECURE_REGISTRIES, and an answer still 401/403 is `source_auth_failed`. What to do
with a failed connection or an error status (retry, fail) is the caller's."""
from __future__ import annotations

from urllib.parse import urlsplit

import requests

from proxy.errors import ErrorCode, ProxyError
from proxy.sources.bounded import ERROR_MAX_BYTES, json_capped, parse_json
from proxy.sources.reference import RegistryRef
from proxy.sources.registry_auth import RegistryAuth, parse_challenge


class RegistryClient:
    """Requests to `ref`'s repository on its registry, over a shared session and auth."""

    def __init__(self, auth: RegistryAuth, session: requests.Session, ref: RegistryRef, timeout_s: float):
        self._auth, self._session, self._ref, self._timeout_s = auth, session, ref, timeout_s

    def send(self, method: str, url: str, scope: str | None = None, answer_challenge: bool = True,
             headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
        """The registry's answer; `scope`: the token scope to ask a Bearer challenge for (the challenge's own
        otherwise); `answer_challenge` False for a body that cannot be sent twice.

        Raises:
            ProxyError: source_auth_failed, hub_unavailable (TLS failed).
            requests.RequestException: the registry could not be reached.
        """
        host, repository = self._ref.host, self._ref.repository
        for attempt in (1, 2):
            # Credentials go to the registry's own host only, never to where an upload Location points elsewhere.
            auth = self._auth.header(host, repository) if urlsplit(url).netloc.lower() == host else None
            try:
                response = self._session.request(
                    method, url, headers={**(headers or {}), **({"Authorization": auth} if auth else {})},
                    timeout=self._timeout_s, **kwargs)
            except requests.exceptions.SSLError as err:
                raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"registry {host} could not be reached over HTTPS (TLS "
                                 "failed); a registry that serves plain HTTP must be listed in INSECURE_REGISTRIES"
                                 ) from err
            if response.status_code == 401 and "WWW-Authenticate" in response.headers and attempt == 1 \
                    and answer_challenge:
                response.close()
                scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
                self._auth.answer(host, repository, scheme, {**params, "scope": scope} if scope else params)
                continue
            break
        if response.status_code in (401, 403):
            response.close()
            raise self._auth.refused(host, repository, response.status_code)
        return response


def error_codes(response: requests.Response) -> set:
    """The distribution spec's error codes of an answer (`{"errors": [{"code": ...}]}`): a streamed answer read
    through a cap, one already read (a push's) as it is."""
    try:
        if response._content_consumed:  # requests read the body already: no stream to cap
            body = parse_json(response.content) if len(response.content) <= ERROR_MAX_BYTES else None
        else:
            body = json_capped(response, ERROR_MAX_BYTES, "an error body")
        return {e.get("code") for e in body.get("errors", [])}
    except (ProxyError, AttributeError, TypeError):
        return set()
