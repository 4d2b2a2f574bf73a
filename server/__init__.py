"""The backend inference server: GGUF models from MODELS_DIR served by a continuous-batching engine on
llama-cpp-python's low-level bindings (server.engine.loop: PARALLEL requests a model in one batch; server.residency.models:
which models stay in memory).

Shimmy-compatible (`/api/generate`, `/api/models`), OpenAI-compatible (`/v1/...`, `/v1/embeddings`) and
residency (`/api/running`, `/api/load`, `/api/unload`, `/stats`) endpoints as docs/api.md describes;
`python -m server` runs it under gunicorn, `create_app(settings)` builds the Flask app.

Beyond the contract:
- Errors: `model_load_failed` (422) when a listed file is not a GGUF model llama.cpp can load,
  naming the file; `invalid_request` (400) also when the prompt does not fit the context window
  or the messages do not fit the model's chat template; `body_too_large` (413) over 8 MiB;
  `not_found` (404) and `method_not_allowed` (405) for unknown routes. An error after a stream
  began is its last event: `data: {"status":"error","error":...,"code":...}`.
- Settings (environment): N_BATCH (512), FLASH_ATTN (true), SWA_FULL (false), HTTP_THREADS (32),
  GRACEFUL_TIMEOUT_S (30), LOG_LEVEL (info), TOOL_FORMATS (unset) beside the contract's; see server.settings.
- `/health` also counts the models in memory (`"models": {"total": N, "loaded": M}`), its slots and queue.
- `/api/models` entries also list `files` (every part of a split set); `source` is "discovered".
"""

# llama.cpp's libraries load before anything imports numpy (core.gguf_check imports gguf, which does). A
# build made with a newer GCC than the system's carries parts of that GCC's libstdc++ inside libggml; with
# the system libstdc++ loaded first by numpy, the two mix and llama.cpp dies with SIGSEGV in
# llama_model::print_info at the first model load, CPU or GPU (seen on a CUDA build on an H100 host).
import llama_cpp  # noqa: E402,F401  isort: skip

