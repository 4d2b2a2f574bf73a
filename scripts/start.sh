#!/usr/bin/env bash
# Set up .venv and start the stack for a person trying it: the backend, then the proxy in the
# foreground. Ctrl-C stops both.
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements.txt
export HOST="${HOST:-127.0.0.1}"
export PORT="${PORT:-8080}"
export BACKEND_PORT="${BACKEND_PORT:-8081}"
export MODELS_DIR="${MODELS_DIR:-$ROOT/models}"
export BACKEND_URL="${BACKEND_URL:-http://127.0.0.1:$BACKEND_PORT}"
mkdir -p "$MODELS_DIR"

python -m server &
backend_pid=$!
trap 'kill "$backend_pid" 2>/dev/null; wait "$backend_pid" 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$BACKEND_PORT/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$backend_pid" 2>/dev/null; then echo "backend exited during start" >&2; exit 1; fi
  sleep 0.2
done
echo "backend on :$BACKEND_PORT, proxy on http://$HOST:$PORT (models in $MODELS_DIR)"
gunicorn -c proxy/gunicorn.conf.py "proxy.app:create_app()"
