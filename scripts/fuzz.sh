#!/usr/bin/env bash
# libFuzzer (clang, with ASan + UBSan) on every parser that reads user files: .npy, .safetensors,
# config.json, model.safetensors.index.json and the --text reader with the tokenizer.
#   bash scripts/fuzz.sh [seconds per harness, default 600] [harness ...]
# Builds fuzz/ as its own project in build-fuzz, then runs each harness for the given time from its
# seed corpus (fuzz/corpus/<name>, copied to build-fuzz/corpus/<name> so the repository's stays
# small) with its dictionary (fuzz/<name>.dict), 2 GiB RSS limit and 1 s per input. A crash stops
# the run with libFuzzer's report and the input saved as build-fuzz/crash-*: fix it, then keep the
# input in fuzz/regressions/<name>/ (ctest replays it in every build: fuzz_replay.<name>).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(npy safetensors config_json shard_index text)
cxx="${CXX_FUZZ:-clang++}"
if ! command -v "$cxx" >/dev/null; then  # Debian 12: clang and its libFuzzer/ASan runtimes
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "fuzz.sh: installing clang" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
fi
jobs="${HYPERATTN_FUZZ_JOBS:-$(nproc)}"
t0=$SECONDS
cmake -S fuzz -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" >/dev/null
cmake --build build-fuzz -j "$jobs"
echo "== fuzz: build took $((SECONDS - t0)) s"
for name in "${harnesses[@]}"; do
  work="build-fuzz/corpus/$name"
  mkdir -p "$work"
  cp -n fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
  echo "== fuzz: $name for ${seconds} s (seeds fuzz/corpus/$name, dictionary fuzz/$name.dict)"
  log="build-fuzz/$name.log"
  set +e
  (cd build-fuzz && ./fuzz_"$name" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=1 \
     -dict=../fuzz/"$name".dict -print_final_stats=1 corpus/"$name") >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb" "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -60 "$log" >&2
    echo "== fuzz: $name FAILED (exit $rc); rerun: (cd build-fuzz && ./fuzz_$name -dict=../fuzz/$name.dict corpus/$name)" >&2
    exit 1
  fi
done
echo "== fuzz: all harnesses clean ($((SECONDS - t0)) s in all)"
