#!/usr/bin/env bash
# Builds the Jinja fuzz target and the chat-template unit tests with clang-14 + ASan/UBSan in the
# sanitizer build dir (shared with gguf_fuzz.sh; ctest serializes the two), runs those unit tests,
# then fuzzes template compilation and rendering for SECONDS starting from the real templates.
#   usage: jinja_fuzz.sh SOURCE_DIR BUILD_DIR [SECONDS]
set -euo pipefail
src=$1
dir=$2
seconds=${3:-20}

for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "jinja_fuzz: $tool not found (Debian packages clang, libclang-rt-14-dev)"; exit 1; }
done
export CCACHE_BASEDIR="$(cd "$src" && pwd)"
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOESERVE_CUDA=OFF -DMOESERVE_FUZZ=ON -DMOESERVE_SANITIZE=ON >/dev/null
fi
cmake --build "$dir" --parallel 2 --target fuzz_jinja jinja_unit_tests

echo "== chat-template unit tests under ASan + UBSan"
"$dir/tests/jinja_unit_tests" --gtest_brief=1

echo "== fuzzing chat templates for ${seconds}s"
mkdir -p "$dir/fuzz-corpus-jinja"
"$dir/fuzz/fuzz_jinja" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
  -artifact_prefix="$dir/jinja-" -print_final_stats=1 "$dir/fuzz-corpus-jinja" "$src/tests/fixtures/templates"
