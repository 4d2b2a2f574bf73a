#!/usr/bin/env bash
# Build the CPU image (docker/Dockerfile) and run it as the platforms do, against a fake Hub on this host:
# pull the real Gemma 270M, generate, stop with SIGTERM, start again, generate from the volume
# (scripts/check_image.py). Prints image size, start-up, pull and tokens/s; exits non-zero on any failure.
# Needs docker or podman (as root here);
# not part of scripts/test.sh: the first build compiles llama.cpp in the image (about 15 minutes on 2 cores).
#   scripts/test_images.sh [IMAGE_TAG]
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" requirements-dev.txt
image="${1:-gguf-proxy:cpu}"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker
elif command -v podman >/dev/null 2>&1; then engine=podman
else echo "neither docker nor podman is installed" >&2; exit 1
fi
started=$SECONDS
"$engine" build --network host -f docker/Dockerfile -t "$image" .
echo "built $image with $engine in $((SECONDS - started)) s"
python scripts/check_image.py --engine "$engine" --image "$image"
