#!/usr/bin/env bash
# Cross-builds hyperattn for aarch64 (library, CLI, tests) in ./build-aarch64 with Debian's
# g++-aarch64-linux-gnu and the arm64 packages (multiarch), and runs the tests under qemu-user
# (cmake/toolchain-aarch64.cmake; docs/portability.md).
#   bash scripts/cross-aarch64.sh          the CI subset of the tests (see `subset` below)
#   bash scripts/cross-aarch64.sh --all    the whole suite (tens of minutes under emulation)
# Installs what is missing (sudo only when not root). Extra arguments after the flags go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

all=0
ctest_args=()
for a in "$@"; do
  case "$a" in
    --all) all=1 ;;
    *) ctest_args+=("$a") ;;
  esac
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
t_start=$(now)

# 1. Packages. The Multi-Arch: same arm64 libraries install beside the host's; header-only and
#    architecture-independent ones (nlohmann-json, CLI11) come from the host's packages.
t0=$(now)
packages=(g++-aarch64-linux-gnu qemu-user cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev
          libfmt-dev:arm64 libgtest-dev:arm64 libopenblas-dev:arm64)
need_update=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "== aarch64: adding the arm64 architecture to dpkg"
  $SUDO dpkg --add-architecture arm64
  need_update=1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== aarch64: installing ${missing[*]}"
  $SUDO apt-get update -qq
  need_update=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# sentencepiece is not Multi-Arch: same in Debian 12: installing libsentencepiece-dev:arm64 would
# remove the host's (and break the x86-64 build). Its two arm64 packages are unpacked instead into
# build-aarch64/sysroot, which the configure step below puts on CMAKE_PREFIX_PATH.
sysroot="$PWD/build-aarch64/sysroot"
if [ ! -e "$sysroot/usr/lib/aarch64-linux-gnu/libsentencepiece.so" ]; then
  echo "== aarch64: unpacking libsentencepiece-dev:arm64 into build-aarch64/sysroot"
  debs="$(mktemp -d)"
  chmod 755 "$debs"
  fetch() { (cd "$debs" && apt-get download libsentencepiece0:arm64 libsentencepiece-dev:arm64 >/dev/null 2>&1); }
  if ((need_update)) || ! fetch; then
    $SUDO apt-get update -qq
    fetch
  fi
  mkdir -p "$sysroot"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
  rm -rf "$debs"
fi
echo "== aarch64: packages ready ($(since "$t0"))"

# 2. Configure and build everything else (Release; no CUDA, Python or benchmarks).
t0=$(now)
cmake -S . -B build-aarch64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-aarch64.cmake" -DCMAKE_PREFIX_PATH="$sysroot/usr" \
  -DHYPERATTN_CUDA=OFF -DHYPERATTN_BUILD_PYTHON=OFF -DHYPERATTN_BUILD_BENCH=OFF \
  -DHYPERATTN_BUILD_TOOLS=ON -DHYPERATTN_BUILD_TESTS=ON >/dev/null
jobs="${HYPERATTN_JOBS:-$(nproc)}"
if ! cmake --build build-aarch64 -j "$jobs" >build-aarch64/build.log 2>&1; then
  tail -n 60 build-aarch64/build.log
  echo "== aarch64: cross-build FAILED (build-aarch64/build.log)"
  exit 1
fi
echo "== aarch64: cross-build done ($(since "$t0")): library, CLI (build-aarch64/tools/hyperattn) and $(ctest --test-dir build-aarch64 -N | sed -n 's/^Total Tests: //p') tests"

# 3. The tests under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR in the toolchain file). Emulated
#    floating point is 20-100 times slower than native. The CI subset is the whole suite less the
#    tests that take more than about 10 s under qemu (the statistical unbiasedness checks of the
#    sampling estimators, the large HyperAttention reference comparisons, the bundled model's
#    perplexity runs, `hyperattn eval`, the exp check over all 2^32 floats, the conformance table,
#    whose every entry the per-operation tests cover): it keeps exact
#    attention, HyperAttention (causal recursion, bf16, test vectors), every *Backward* test, the
#    kernel tests, the .npy/.safetensors parsers, the model runner's unit tests and the CLI.
slow='IsUnbiased|^HyperAttention\.NonCausalMatchesReference$|^HyperAttention\.SameSeedSameBytesForAnyThreadCount$'
slow+='|^HyperVariants\.(LocalWindowMatchesReference|SinksAndStratifiedMatchReference)$'
slow+='|^VectorMath\.ExpWithinTwoUlpOverAllFloats$|^LlamaReference\.(ReproducesTokensNllAndLogits|Bf16MatmulKeepsThePerplexity)$'
slow+='|^Bf16Gemm\.MatchesDoubleProductOfRoundedOperands$|^Cli\.Eval|^Conformance\.'
t0=$(now)
if ((all)); then
  echo "== aarch64: running the whole test suite under qemu-user"
  ctest --test-dir build-aarch64 --output-on-failure -j "$jobs" --timeout 3600 "${ctest_args[@]}"
else
  echo "== aarch64: running the CI subset of the tests under qemu-user (--all for the whole suite)"
  ctest --test-dir build-aarch64 --output-on-failure -j "$jobs" --timeout 600 -E "$slow" "${ctest_args[@]}"
fi
echo "== aarch64: tests done ($(since "$t0")); total $(since "$t_start")"
