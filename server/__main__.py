"""`python -m server`: the backend under gunicorn, one worker holding the models, threads for clients."""
from __future__ import annotations

import logging
import os

from gunicorn.app.base import BaseApplication

from core.serving import ACCESS_LOG_FORMAT, LOG_FORMAT

from . import crash
from .settings import Settings


class BackendApplication(BaseApplication):
    """Gunicorn configured in code, so `python -m server` needs no config file."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self):
        # Runs in the worker: llama.cpp and the models never live in the master.
        from .app import create_app

        return create_app(self.settings)


def gunicorn_options(settings: Settings) -> dict:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": [f"{host}:{settings.port}"],
        # One worker: models are loaded once, in one process; a second would double the memory.
        "workers": 1,
        "worker_class": "gthread",
        "threads": max(settings.http_threads, settings.parallel + settings.max_queue + 8),
        # gthread's timeout is the worker's heartbeat, sent by its main loop while requests run in
        # other threads, so a generation of any length is never killed by it.
        "timeout": 120,
        "graceful_timeout": settings.graceful_timeout_s,
        "keepalive": 75,
        # Read-only root filesystems: the heartbeat file goes to memory, no control socket.
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "control_socket_disable": True,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": settings.log_level,
        "access_log_format": ACCESS_LOG_FORMAT,
        "post_fork": crash.post_fork,
        "child_exit": crash.child_exit,
        "pre_request": crash.pre_request,
        "worker_exit": worker_exit,
    }


def worker_exit(server, worker) -> None:
    """In the worker, once SIGTERM's graceful stop ended: unload the models, so that the prompt cache's memory
    and the slots' prompts are written to MODELS_DIR (docs/api.md, Prompt cache)."""
    backend = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("backend")
    if backend is not None:
        backend.residency.close()


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    BackendApplication(settings).run()


if __name__ == "__main__":
    main()
