#!/usr/bin/env bash
# Builds the GGUF fuzz target and the GGUF unit tests with clang-14 + ASan/UBSan in a build dir of
# their own (only those two targets; ccache keeps re-runs cheap), runs those unit tests, then fuzzes
# GgufFile::parse for SECONDS from seeds written by gguf_write_samples. The corpus the fuzzer grows
# stays in the build dir, so later runs start from it.
#   usage: gguf_fuzz.sh SOURCE_DIR BUILD_DIR GGUF_WRITE_SAMPLES [SECONDS]
set -euo pipefail
src=$1
dir=$2
write_samples=$3
seconds=${4:-20}

for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "gguf_fuzz: $tool not found (Debian packages clang, libclang-rt-14-dev)"; exit 1; }
done
# Paths under the source dir hash relative to it, so a fresh clone elsewhere (CI) still hits ccache.
export CCACHE_BASEDIR="$(cd "$src" && pwd)"
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOESERVE_CUDA=OFF -DMOESERVE_FUZZ=ON -DMOESERVE_SANITIZE=ON >/dev/null
fi
cmake --build "$dir" --parallel 2 --target fuzz_gguf_parse gguf_unit_tests

echo "== GGUF unit tests under ASan + UBSan"
"$dir/tests/gguf_unit_tests" --gtest_brief=1

echo "== fuzzing GgufFile::parse for ${seconds}s"
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
"$write_samples" "$seeds"
rm "$seeds/samples.json"
mkdir -p "$dir/fuzz-corpus"
"$dir/fuzz/fuzz_gguf_parse" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
  -artifact_prefix="$dir/" -print_final_stats=1 "$dir/fuzz-corpus" "$seeds"
