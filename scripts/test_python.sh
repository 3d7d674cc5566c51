#!/usr/bin/env bash
# Creates (or reuses) a virtual environment, installs numpy, pytest, torch, transformers and the
# hyperattn package (pip install .), and runs the pytest suite in python/tests.
# The venv: ${HYPERATTN_VENV:-$HOME/.cache/hyperattn/venv}; pip's cache makes reinstalls cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HYPERATTN_VENV:-$HOME/.cache/hyperattn/venv}"
py="$(command -v python3)"
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv python3-dev >/dev/null
  fi
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
deps=(numpy pytest torch transformers safetensors sentencepiece scikit-build-core nanobind matplotlib)
if ! "$venv/bin/python" -c 'import numpy, pytest, torch, transformers, safetensors, sentencepiece, scikit_build_core, nanobind, matplotlib' 2>/dev/null; then
  "${pip[@]}" install "${deps[@]}"
fi
"${pip[@]}" install --no-build-isolation .
set +e
(cd python/tests && CI="${CI:-}" HYPERATTN_CLI="$PWD/../../build/tools/hyperattn" "$venv/bin/python" -m pytest -q -p no:cacheprovider .)
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
