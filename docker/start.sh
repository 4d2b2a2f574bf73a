#!/usr/bin/env bash
# Container entrypoint: start the backend (python -m server), wait for its /health, then run the proxy
# (gunicorn) in the foreground. SIGTERM or SIGINT is forwarded to both; when either process dies on its own,
# the other is stopped and the script exits non-zero, so the container restarts as a whole.
#
# Paths and ports come from the environment, with the image's values as defaults, so the tests can run this
# script from a checkout with a temporary MODELS_DIR and free ports.
set -uo pipefail

APP_DIR="${APP_DIR:-/app}"
PYTHON="${PYTHON:-python}"
export MODELS_DIR="${MODELS_DIR:-/models}"
export HOST="${HOST:-0.0.0.0}"  # the proxy's
# The backend answers only the proxy beside it (its endpoints have no key); docs/deployment.md says when to change it.
export BACKEND_HOST="${BACKEND_HOST:-127.0.0.1}"
export PORT="${PORT:-8080}"
export BACKEND_PORT="${BACKEND_PORT:-8081}"
export BACKEND_URL="${BACKEND_URL:-http://127.0.0.1:${BACKEND_PORT}}"
export HOME="${HOME:-/tmp}"
# Why the backend died, for the proxy's backend_unavailable answers (docker/backend_exit.sh).
export BACKEND_EXIT_FILE="${BACKEND_EXIT_FILE:-${TMPDIR:-/tmp}/gguf-backend-${BACKEND_PORT}.exit}"
# Longer than this and the proxy starts anyway; it answers 503 on /v1/health until the backend is up.
BACKEND_START_TIMEOUT_S="${BACKEND_START_TIMEOUT_S:-120}"

log() { echo "start.sh: $*" >&2; }

# SAP AI Core has no ConfigMaps: its ServingTemplate passes the manifest as a string parameter, in
# MODELS_MANIFEST_JSON. Written to a file under /tmp (the root filesystem may be read-only; /tmp is writable),
# it reaches the proxy as MODELS_MANIFEST like a mounted ConfigMap would. Setting both is refused: which one
# is meant cannot be guessed. A malformed manifest stops the proxy at start, naming the entry and field.
write_manifest_json() {
  [ -n "${MODELS_MANIFEST_JSON:-}" ] || return 0
  if [ -n "${MODELS_MANIFEST:-}" ]; then
    log "both MODELS_MANIFEST and MODELS_MANIFEST_JSON are set; set one"
    return 1
  fi
  local file="${TMPDIR:-/tmp}/models-manifest-${PORT}.json"
  (umask 077 && printf '%s\n' "$MODELS_MANIFEST_JSON" >"$file") || { log "cannot write $file"; return 1; }
  export MODELS_MANIFEST="$file"
  log "MODELS_MANIFEST_JSON written to $file (MODELS_MANIFEST)"
}

backend_pid=""
proxy_pid=""
stopping=0

stop_children() {
  local pid
  for pid in "$proxy_pid" "$backend_pid"; do
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
}

on_signal() {
  log "$1 received, stopping proxy and backend"
  stopping=1
  stop_children
}
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGINT' INT

# A plain HTTP/1.0 request over bash's /dev/tcp: the image has no curl.
backend_healthy() {
  local status=""
  { exec 3<>"/dev/tcp/127.0.0.1/${BACKEND_PORT}"; } 2>/dev/null || return 1
  printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r -t 5 _ status _ <&3 || status=""
  # Read the rest before closing, so the backend does not log a reset connection.
  while IFS= read -r -t 5 _ <&3; do :; done
  exec 3<&- 3>&-
  [ "$status" = "200" ]
}

wait_for_backend() {
  local deadline=$((SECONDS + BACKEND_START_TIMEOUT_S))
  until backend_healthy; do
    if [ "$stopping" = 1 ]; then return 1; fi
    if ! kill -0 "$backend_pid" 2>/dev/null; then
      local status=0
      wait "$backend_pid" || status=$?
      log "backend exited during start"
      record_backend_exit "$status"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "backend not healthy after ${BACKEND_START_TIMEOUT_S}s; starting the proxy anyway"
      return 0
    fi
    sleep 0.2
  done
}

# Wait for every child still running; a signal interrupting `wait` is handled and the wait resumed.
reap_children() {
  local pid
  for pid in "$proxy_pid" "$backend_pid"; do
    [ -n "$pid" ] || continue
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" 2>/dev/null || true; done
  done
}

cd "$APP_DIR" || { log "APP_DIR $APP_DIR not found"; exit 1; }
# shellcheck source=docker/backend_exit.sh
source docker/backend_exit.sh
mkdir -p "$MODELS_DIR" 2>/dev/null || true
write_manifest_json || exit 1
rm -f "$BACKEND_EXIT_FILE"

"$PYTHON" -m server &
backend_pid=$!
log "backend started (pid $backend_pid, port $BACKEND_PORT, models in $MODELS_DIR)"

if ! wait_for_backend; then
  stop_children
  reap_children
  if [ "$stopping" = 1 ]; then exit 0; fi
  exit 1
fi

"$PYTHON" -m gunicorn -c proxy/gunicorn.conf.py "proxy.app:create_app()" &
proxy_pid=$!
log "proxy started (pid $proxy_pid, port $PORT)"

# `wait -n` returns when either child exits, or when a trapped signal interrupts it (then -p leaves
# exited_pid unset).
exited_pid=""
status=0
while [ -z "${exited_pid:-}" ] && [ "$stopping" = 0 ]; do
  wait -n -p exited_pid "$backend_pid" "$proxy_pid"
  status=$?
done

if [ "$stopping" = 1 ]; then
  reap_children
  log "stopped"
  exit 0
fi

if [ "${exited_pid:-}" = "$backend_pid" ]; then
  name=backend
  record_backend_exit "$status"
else
  name=proxy
fi
log "$name exited with status $status; stopping the other process"
stop_children
reap_children
# A process that ends on its own is a failure even when its status is 0: the container must restart.
if [ "$status" -eq 0 ]; then status=1; fi
exit "$status"
