"""A real OCI distribution registry (Debian's docker-registry, CNCF distribution 2.8) as a process, and publishing
artifacts to it with plain calls of the distribution API: for the pull benchmark and the tests."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

from scripts.processes import free_port, running_process

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"
DMR_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
TITLE = "org.opencontainers.image.title"
MISSING = "docker-registry is not installed (apt-get install docker-registry apache2-utils)"


@dataclass
class Registry:
    url: str
    host: str  # 127.0.0.1:PORT
    storage: Path
    auth: tuple[str, str] | None = None

    def put_blob(self, repo: str, data: bytes | Path) -> tuple[str, int]:
        """Upload one blob (monolithic POST then PUT with its digest); its digest and size."""
        digest = "sha256:" + (hashlib.sha256(data).hexdigest() if isinstance(data, bytes)
                              else _file_sha256(data))
        started = requests.post(f"{self.url}/v2/{repo}/blobs/uploads/", auth=self.auth, timeout=30)
        assert started.status_code == 202, started.text
        location = requests.compat.urljoin(self.url, started.headers["Location"])
        with contextlib.ExitStack() as stack:
            body = data if isinstance(data, bytes) else stack.enter_context(open(data, "rb"))
            done = requests.put(location, params={"digest": digest}, data=body, auth=self.auth, timeout=300,
                                headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        return digest, size

    def put_manifest(self, repo: str, reference: str, manifest: dict, media_type: str) -> str:
        body = json.dumps(manifest).encode()
        response = requests.put(f"{self.url}/v2/{repo}/manifests/{reference}", data=body, auth=self.auth,
                                headers={"Content-Type": media_type}, timeout=30)
        assert response.status_code == 201, response.text
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def publish(self, repo: str, tag: str, layers: list[tuple[Path, str, dict | None]],
                manifest_type: str = OCI_MANIFEST, config_type: str = DMR_CONFIG) -> str:
        """Publish a model artifact: a config blob and one layer per (file, media type, annotations);
        the manifest's digest."""
        config = json.dumps({"config": {"format": "gguf"}}).encode()
        config_digest, config_size = self.put_blob(repo, config)
        descriptors = []
        for path, media_type, annotations in layers:
            digest, size = self.put_blob(repo, path)
            descriptors.append({"mediaType": media_type, "digest": digest, "size": size,
                                **({"annotations": annotations} if annotations else {})})
        manifest = {"schemaVersion": 2, "mediaType": manifest_type,
                    "config": {"mediaType": config_type, "digest": config_digest, "size": config_size},
                    "layers": descriptors}
        return self.put_manifest(repo, tag, manifest, manifest_type)

    def blob_path(self, digest: str) -> Path:
        hexdigest = digest.partition(":")[2]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@contextlib.contextmanager
def registry_process(tmp: Path, htpasswd: tuple[str, str] | None = None) -> Iterator[Registry]:
    """The real registry on a free 127.0.0.1 port with its storage under `tmp`; with `htpasswd`
    (user, password), it demands Basic auth."""
    if not Path(REGISTRY_BIN).exists():
        raise FileNotFoundError(MISSING)
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd:
        line = subprocess.run(["htpasswd", "-Bbn", *htpasswd], check=True, capture_output=True, text=True).stdout
        (tmp / "htpasswd").write_text(line)
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp / 'htpasswd'}\n"
    config = tmp / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
                      f"{tmp / 'storage'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
    url = f"http://127.0.0.1:{port}"
    with running_process([REGISTRY_BIN, "serve", str(config)], {}, url + "/v2/", tmp / "registry.log"):
        yield Registry(url, f"127.0.0.1:{port}", tmp / "storage", htpasswd)


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
