#!/usr/bin/env bash
# Set up .venv and start the stack for a person trying it: the backend, then the proxy. Ctrl-C stops both.
# When the backend dies, this says why (signal and what to do) and the proxy stays up, answering
# backend_unavailable with the same sentence, until Ctrl-C.
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements.txt
source docker/backend_exit.sh
export HOST="${HOST:-127.0.0.1}"
export PORT="${PORT:-8080}"
export BACKEND_PORT="${BACKEND_PORT:-8081}"
export MODELS_DIR="${MODELS_DIR:-$ROOT/models}"
export BACKEND_URL="${BACKEND_URL:-http://127.0.0.1:$BACKEND_PORT}"
export BACKEND_EXIT_FILE="${BACKEND_EXIT_FILE:-${TMPDIR:-/tmp}/gguf-backend-${BACKEND_PORT}.exit}"
mkdir -p "$MODELS_DIR"
rm -f "$BACKEND_EXIT_FILE"

# A port already taken (most often a stack started before) is said at once and ends the start: gunicorn would
# otherwise print the URLs, then retry its bind for seconds before giving up.
port_free() {
  python -c 'import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no obstacle
    sock.bind((host, port))' "$1" "$2" 2>/dev/null
}
for wanted in "proxy PORT $PORT" "backend BACKEND_PORT $BACKEND_PORT"; do
  read -r what variable port <<<"$wanted"
  if ! port_free "$HOST" "$port"; then
    echo "error: port $port on $HOST, wanted by the $what, is in use: another stack may be running there" \
      "(ss -ltnp 'sport = :$port' shows which process); stop it, or set $variable to a free port" >&2
    exit 1
  fi
done

python -m server &
backend_pid=$!
proxy_pid=""
trap 'kill $backend_pid $proxy_pid 2>/dev/null; wait 2>/dev/null; exit 0' INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$BACKEND_PORT/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$backend_pid" 2>/dev/null; then
    status=0
    wait "$backend_pid" || status=$?
    record_backend_exit "$status"
    exit 1
  fi
  sleep 0.2
done
echo "backend on :$BACKEND_PORT, proxy on http://$HOST:$PORT (models in $MODELS_DIR)"
gunicorn -c proxy/gunicorn.conf.py "proxy.app:create_app()" &
proxy_pid=$!

set +e
wait -n -p exited_pid "$backend_pid" "$proxy_pid"
status=$?
if [ "$exited_pid" = "$backend_pid" ]; then
  record_backend_exit "$status"
  wait "$proxy_pid"
else
  kill "$backend_pid" 2>/dev/null
  wait "$backend_pid" 2>/dev/null
fi
exit "$status"
