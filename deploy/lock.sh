#!/usr/bin/env bash
# Pins the runtime dependencies of pyproject.toml, with hashes, for the image
# (deploy/Dockerfile installs exactly these). Run after changing the
# dependencies: `make lock`. Needs PyPI; tests only read the result.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
[ -x "$uv" ] || .venv/bin/pip install -q uv
"$uv" pip compile pyproject.toml --universal --generate-hashes --quiet \
  --custom-compile-command "make lock" --output-file deploy/requirements.lock "$@"
