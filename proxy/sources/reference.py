"""What `model` may name: a Hub repo id, or a reference of a source's scheme (`ollama://`, `oci://`: registry
references), parsed to the one canonical form that pulls, provenance and ALLOWED_REPOS all use (docs/api.md,
Sources). The schemes are written here once: CANONICAL maps each to how its references parse."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from core.naming import scheme_of
from proxy.errors import ErrorCode, ProxyError

OLLAMA_HOST = "registry.ollama.ai"
REGISTRY_SCHEMES = ("ollama", "oci")
HUB_PREFIXES = ("hf://", "hf.co/")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                      r"[A-Za-z0-9])?)*(?::[0-9]{1,5})?\Z")
# The distribution spec's repository path component, tag and digest grammar.
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}\Z")
_REFERENCE_MAX = 512


@dataclass(frozen=True)
class RegistryRef:
    """A parsed `ollama://` or `oci://` reference, fully qualified."""

    scheme: str
    host: str  # host[:port]
    repository: str  # path in the registry: `library/gemma3`
    tag: str | None  # None when pinned by digest
    digest: str | None = None  # sha256:<hex>

    @property
    def reference(self) -> str:
        """What the manifest is asked for by: the tag or the digest."""
        return self.digest or self.tag

    @property
    def canonical(self) -> str:
        pin = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"{self.scheme}://{self.host}/{self.repository}{pin}"

    @property
    def name_tag(self) -> str:
        """`<name>-<tag>`: the installed name's stem when the layer names no file."""
        tag = self.digest.partition(":")[2][:12] if self.digest else self.tag
        return f"{self.repository.rpartition('/')[2]}-{tag}"


def is_digest(value: object) -> bool:
    """A `sha256:<64 hex>` digest, as references and manifests name blobs and manifests."""
    return isinstance(value, str) and _DIGEST_RE.match(value) is not None


def is_registry_reference(model: str) -> bool:
    return scheme_of(model) in REGISTRY_SCHEMES


def is_source_reference(model: str) -> bool:
    """A reference of a scheme a source is registered for (CANONICAL), not a Hub name."""
    return scheme_of(model) in CANONICAL


def canonical_reference(model: str) -> str:
    """The canonical form of a reference, as its scheme's source parses it.

    Raises:
        ProxyError: unsupported_source (no source has the scheme), invalid_repo_id (a known scheme, a bad
            reference).
    """
    parse = CANONICAL.get(scheme_of(model))
    if parse is None:
        raise _unsupported(scheme_of(model))
    return parse(model)


def _unsupported(scheme: str | None) -> ProxyError:
    others = "".join(f", {s}://..." for s in CANONICAL if s not in REGISTRY_SCHEMES)
    return ProxyError(ErrorCode.UNSUPPORTED_SOURCE, f"unknown source scheme {scheme!r}: model must be a Hub repo id "
                      f"owner/name, ollama://[host/][namespace/]name[:tag] or oci://host/repository[:tag]{others}")


def parse_reference(model: str) -> RegistryRef:
    """Parse an `ollama://` or `oci://` reference.

    Raises:
        ProxyError: unsupported_source (another scheme), invalid_repo_id (a known scheme, a bad reference).
    """
    scheme = scheme_of(model)
    if scheme not in REGISTRY_SCHEMES:
        raise _unsupported(scheme)
    rest = model[len(scheme) + 3:]
    if len(model) > _REFERENCE_MAX or not rest:
        raise _bad(scheme)
    rest, _, digest = rest.partition("@")
    parts = rest.split("/")
    host = parts.pop(0) if len(parts) > 1 and _looks_like_host(parts[0]) else None
    if host is None:
        if scheme == "oci":
            raise _bad(scheme, "an oci:// reference names its registry host")
        host = OLLAMA_HOST
    last, _, tag = parts[-1].partition(":")
    parts[-1] = last
    if scheme == "ollama":
        if len(parts) > 2:
            raise _bad(scheme)
        parts = ["library", *parts] if len(parts) == 1 else parts
    if not _HOST_RE.match(host) or not all(_COMPONENT_RE.match(p) for p in parts) \
            or (tag and not _TAG_RE.match(tag)) or (digest and not is_digest(digest)):
        raise _bad(scheme)
    if not 0 < int(host.partition(":")[2] or 443) <= 65535:
        raise _bad(scheme, f"port {host.partition(':')[2]} is not a TCP port (1-65535)")
    return RegistryRef(scheme, host.lower(), "/".join(parts), None if digest else (tag or "latest"), digest or None)


def _looks_like_host(part: str) -> bool:
    """Docker's rule: a first component with a dot or a port, or `localhost`, is a registry host."""
    return "." in part or ":" in part or part == "localhost"


def _bad(scheme: str, why: str = "") -> ProxyError:
    forms = {"ollama": "ollama://[host[:port]/][namespace/]name[:tag]",
             "oci": "oci://host[:port]/repository[:tag] or oci://host[:port]/repository@sha256:<hex>"}
    return ProxyError(ErrorCode.INVALID_REPO_ID, f"{why + '; ' if why else ''}an {scheme}:// reference must be "
                      f"{forms[scheme]}, in lowercase letters, digits and . _ -")


# Scheme -> the canonical form of its references (raising ProxyError invalid_repo_id for a bad one). A source
# with a scheme of its own is added by SourceRouter.register (proxy/sources/router.py).
CANONICAL: dict[str, Callable[[str], str]] = {scheme: lambda model: parse_reference(model).canonical
                                              for scheme in REGISTRY_SCHEMES}
