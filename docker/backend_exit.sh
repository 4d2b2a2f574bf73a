# Sourced by docker/start.sh and scripts/start.sh: say why the backend process ended, in words a person
# can act on, and leave that sentence in BACKEND_EXIT_FILE, where the proxy adds it to its
# `backend_unavailable` answers (proxy/backend/client.py).

# describe_backend_exit STATUS: one sentence for a wait status (128+N is "killed by signal N").
describe_backend_exit() {
  local status=$1 signal
  if [ "$status" -le 128 ]; then
    echo "the backend exited with status $status; its log above says why"
    return
  fi
  signal="SIG$(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128)))"
  case "$signal" in
    SIGILL) echo "the backend was killed by SIGILL (illegal instruction): its llama.cpp build uses CPU" \
      "instructions this machine does not allow (often AMX, which some cloud VMs advertise without granting);" \
      "rebuild llama.cpp as docs/operations.md 'Troubleshooting: the backend dies with SIGILL' says" ;;
    SIGKILL) echo "the backend was killed by SIGKILL, most often the out-of-memory killer: the model needs" \
      "more memory than this container or machine allows" ;;
    SIGSEGV|SIGBUS|SIGABRT|SIGFPE) echo "the backend crashed with $signal inside llama.cpp; the file may be" \
      "damaged or not supported by this llama.cpp version (see the backend's log)" ;;
    *) echo "the backend was stopped by $signal" ;;
  esac
}

# record_backend_exit STATUS: log the sentence and leave it for the proxy.
record_backend_exit() {
  local reason
  reason="$(describe_backend_exit "$1")"
  echo "start.sh: $reason" >&2
  if [ -n "${BACKEND_EXIT_FILE:-}" ]; then printf '%s\n' "$reason" > "$BACKEND_EXIT_FILE" 2>/dev/null || true; fi
}
