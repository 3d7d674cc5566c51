#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
extra=()
# The CUDA backend compiles wherever nvcc is (its GPU tests skip without a GPU).
if [ "${HYPERATTN_TEST_CUDA:-auto}" != "off" ] && { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; } && [ -f src/cuda/CMakeLists.txt ]; then
  extra+=(-DHYPERATTN_CUDA=ON -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
fi
bash scripts/build.sh "${extra[@]}"
ctest --test-dir build --output-on-failure -j "$(nproc)"
# The Python package and its pytest suite (after ctest; outside the C++ build). The venv lives outside
# the repository so that reruns on the same machine reuse it; HYPERATTN_TEST_PYTHON=off skips it.
if [ "${HYPERATTN_TEST_PYTHON:-on}" != "off" ]; then
  bash scripts/test_python.sh
fi
