# Sourced by scripts/_setup.sh and scripts/build_llama.sh: pip_quiet runs pip quietly, minus one warning.
#
# A pip config whose extra-index-url names local file:// indexes (`pip config list`) makes pip warn
# "Location 'file:///.../<package>/' is ignored: it is neither a file nor a directory" for every package such an
# index lacks: nothing is wrong, the package comes from the next index. Only that line is dropped; every other
# warning and error still shows, and pip's exit status is the function's.
PIP_IGNORED_LOCATION="^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.$"

pip_quiet() {  # pip_quiet PYTHON ARGS...: PYTHON -m pip --quiet ARGS...
  local python="$1"
  shift
  { "$python" -m pip --quiet "$@" 2>&1 1>&3 3>&- | { grep -v -E "$PIP_IGNORED_LOCATION" || true; } >&2; } 3>&1
}
