"""The backend inference server's Flask app."""
from __future__ import annotations

import logging

from flask import Flask

from .errors import register_error_handlers
from .residency.loading import gpu_offload_supported
from .residency.models import Residency
from .api import info
from .api.routes import Backend, bp
from .api import llama_server
from .chat.tool_formats import format_override
from .settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, residency: Residency | None = None) -> Flask:
    """Build the app; settings come from the environment unless given (tests give them)."""
    settings = settings or Settings.from_env()
    format_override(settings.tool_formats, "")  # a bad TOOL_FORMATS stops the start, with its message
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    gpu_offload = gpu_offload_supported()
    app.extensions["backend"] = Backend(
        settings=settings,
        residency=residency or Residency(settings, gpu_offload=gpu_offload),
        gpu_offload=gpu_offload,
    )
    register_error_handlers(app, service="backend")
    app.register_blueprint(bp)
    app.register_blueprint(llama_server.bp)  # llama-server's own paths (/completion, /infill, /tokenize, ...)
    app.register_blueprint(info.bp)
    log.info("backend serving models from %s", settings.models_dir)
    return app
