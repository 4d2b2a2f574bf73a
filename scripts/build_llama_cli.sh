#!/usr/bin/env bash
# Build llama.cpp's own command-line client, llama-completion, from the llama.cpp that the pinned
# llama-cpp-python vendors, once, into the cache; print its path. tests/test_llama_hf.py runs it with
# `-hf REPO:QUANT` and HF_ENDPOINT=<proxy>, as users point llama.cpp at a serving peer.
#
# Portable (GGML_NATIVE=OFF, so no AMX or AVX-512 this host may advertise without granting) and static (one
# file). About 7 minutes on 2 cores; needs .venv (scripts/_setup.sh) for pip, and cmake + ninja (from PyPI
# into .venv when the system has none).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CMAKE_ARGS="-DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release"
llama_req="$(grep -E '^llama-cpp-python==' requirements.txt)"
key="$(printf '%s\n%s\n' "$llama_req" "$CMAKE_ARGS" | sha256sum | cut -c1-16)"
out="${GGUF_PROXY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/gguf-proxy/llama-tools}/$key"
if [ ! -x "$out/llama-completion" ]; then
  echo "building llama-completion from $llama_req's llama.cpp (about 7 minutes on 2 cores)" >&2
  if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
    .venv/bin/python -m pip install --quiet cmake ninja
    export PATH="$ROOT/.venv/bin:$PATH"
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  .venv/bin/python -m pip download --quiet --no-deps --no-binary :all: -d "$work" "$llama_req"
  tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  # shellcheck disable=SC2086  # CMAKE_ARGS: one word per argument
  cmake -S "$src" -B "$work/build" -G Ninja $CMAKE_ARGS >"$work/configure.log" 2>&1 \
    || { tail -20 "$work/configure.log" >&2; exit 1; }
  cmake --build "$work/build" --target llama-completion -j "$(nproc)" >"$work/build.log" 2>&1 \
    || { tail -20 "$work/build.log" >&2; exit 1; }
  mkdir -p "$out.tmp"
  cp "$work/build/bin/llama-completion" "$out.tmp/"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out/llama-completion"
