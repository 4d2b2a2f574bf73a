# Sourced by start.sh and test.sh: create .venv if missing and install the given requirements file.
#
# llama.cpp is compiled once per machine and build configuration by scripts/build_llama.sh (the shared
# libraries and llama.cpp's own tools, about 9 minutes on 2 cores, cached by a fingerprint of version, flags
# and this CPU). llama-cpp-python itself is installed without its own build (-DLLAMA_BUILD=OFF: its Python
# code only, seconds) and given those libraries in its lib folder, where it loads them from.
#
# It says what it does, a line a step on stderr, and what each step took at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/_pip.sh
PYTHON="${PYTHON:-python3}"
SETUP_TIMES=""
setup_step() {  # setup_step WHAT COMMAND...: a line saying WHAT, the command, and its time kept for the end
  local what="$1" started=$SECONDS
  shift
  echo "setup: $what" >&2
  "$@"
  SETUP_TIMES="$SETUP_TIMES, $what $((SECONDS - started))s"
}
setup_llama_python() {  # llama-cpp-python's Python code (its own build of llama.cpp skipped) and our build's libraries
  local llama_req lib_dir
  llama_req="$(grep -E '^llama-cpp-python==' requirements.txt)"
  if ! .venv/bin/python -m pip show --quiet llama-cpp-python 2>/dev/null \
      || [ "$(.venv/bin/python -m pip show llama-cpp-python | sed -n 's/^Version: //p')" != "${llama_req#*==}" ]; then
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" pip_quiet .venv/bin/python install --no-cache-dir \
      --no-deps --force-reinstall --no-binary llama-cpp-python "$llama_req"
    rm -f .venv/.llama-build
  fi
  if [ "$(cat .venv/.llama-build 2>/dev/null)" != "$LLAMA_BUILD_DIR" ]; then
    lib_dir="$(.venv/bin/python -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llama_cpp").origin), "lib"))')"
    mkdir -p "$lib_dir"
    cp -a "$LLAMA_BUILD_DIR"/*.so* "$lib_dir/"
    echo "$LLAMA_BUILD_DIR" > .venv/.llama-build
  fi
}
setup_started=$SECONDS
if [ ! -x .venv/bin/python ]; then
  setup_step "creating .venv" "$PYTHON" -m venv .venv
fi
setup_step "updating pip" pip_quiet .venv/bin/python install --upgrade pip
echo "setup: llama.cpp (built once per machine, then cached)" >&2
llama_started=$SECONDS
LLAMA_BUILD_DIR="$(scripts/build_llama.sh)"
export LLAMA_BUILD_DIR
SETUP_TIMES="$SETUP_TIMES, llama.cpp $((SECONDS - llama_started))s"
setup_step "installing llama-cpp-python with that build" setup_llama_python
setup_step "installing ${1:-requirements.txt}" pip_quiet .venv/bin/python install -r "${1:-requirements.txt}"
export PATH="$ROOT/.venv/bin:$PATH"
install_command() {  # the gguf-proxy command (pyproject.toml), editable
  # setuptools tells every editable install to beware of folders named like the package: ours are the package.
  PYTHONWARNINGS="ignore:Editable installation" pip_quiet .venv/bin/python install --no-deps -e .
}
if ! .venv/bin/python -m pip show --quiet gguf-proxy 2>/dev/null; then
  setup_step "installing the gguf-proxy command" install_command
fi
echo "setup: ready in $((SECONDS - setup_started))s (${SETUP_TIMES#, })" >&2
