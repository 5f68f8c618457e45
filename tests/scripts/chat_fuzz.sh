#!/usr/bin/env bash
# Builds the reply-parser fuzz target and the chat + sampler unit tests with clang-14 + ASan/UBSan
# in a build dir of their own (only those targets; ccache keeps re-runs cheap), runs those unit
# tests, then fuzzes the reply parser for SECONDS (chunked vs. whole input must agree, output must
# stay bounded). The corpus the fuzzer grows stays in the build dir, so later runs start from it.
#   usage: chat_fuzz.sh SOURCE_DIR BUILD_DIR [SECONDS]
set -euo pipefail
src=$1
dir=$2
seconds=${3:-20}

for tool in clang-14 clang++-14; do
  command -v "$tool" >/dev/null || { echo "chat_fuzz: $tool not found (Debian packages clang, libclang-rt-14-dev)"; exit 1; }
done
export CCACHE_BASEDIR="$(cd "$src" && pwd)"
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMOESERVE_CUDA=OFF -DMOESERVE_FUZZ=ON -DMOESERVE_SANITIZE=ON >/dev/null
fi
cmake --build "$dir" --parallel 2 --target fuzz_chat_output chat_unit_tests

echo "== chat and sampler unit tests under ASan + UBSan"
"$dir/tests/chat_unit_tests" --gtest_brief=1

echo "== fuzzing the reply parser for ${seconds}s"
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
# Byte 0: configuration (format, reasoning), byte 1: chunking seed, then a reply.
printf '\001\005Hi.\n<tool_call>\n<function=f>\n<parameter=n>\n5\n</parameter>\n<parameter=o>\n{"a": [1]}\n</parameter>\n</function>\n</tool_call>' > "$seeds/xml"
printf '\006\002<think>plan</think>\n<tool_call>\n{"name": "f", "arguments": {"a": "x"}}\n</tool_call>' > "$seeds/json"
printf '\001\003<function=f>\n<parameter=a>\nv\n<parameter=n>\n1\n</function>\n<tool_call><function=g>' > "$seeds/slips"
mkdir -p "$dir/chat-fuzz-corpus"
"$dir/fuzz/fuzz_chat_output" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=8192 \
  -artifact_prefix="$dir/" -print_final_stats=1 "$dir/chat-fuzz-corpus" "$seeds"
