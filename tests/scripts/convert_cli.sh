#!/usr/bin/env bash
# `moeserve convert` and `moeserve synth` as a user runs them: every fixture at every --type,
# the files they write validated by `moeserve inspect`, and the usage errors (exit 2) and input
# errors (exit 1, one message naming the problem).
# usage: convert_cli.sh MOESERVE FIXTURES_DIR
set -uo pipefail
bin=$1
fixtures=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() {  # check NAME EXPECTED_RC REGEX -- command...
  local name=$1 want_rc=$2 regex=$3
  shift 4
  "$@" >"$tmp/out" 2>&1
  local rc=$?
  if [[ $rc -eq $want_rc ]] && grep -Eq -- "$regex" "$tmp/out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $name (exit $rc, want $want_rc; output must match '$regex'):"
    head -20 "$tmp/out"
  fi
}

for m in qwen3next qwen3moe qwen3 llama; do
  for t in f32 f16 bf16 q8_0; do
    check "convert $m $t" 0 "^$tmp/$m.$t.gguf: $m, [0-9]+ layers" -- \
      "$bin" convert "$fixtures/hf/$m" -o "$tmp/$m.$t.gguf" --type "$t" --quiet
    check "inspect $m $t" 0 "summary +$m:" -- "$bin" inspect "$tmp/$m.$t.gguf"
  done
done
check "progress lines" 0 "^\[1/[0-9]+\] token_embd.weight \{64, 528\} F16" -- \
  "$bin" convert "$fixtures/hf/qwen3" -o "$tmp/progress.gguf"
check "q8_0 fallback note" 0 "note: blk.0.ffn_down_exps.weight: row of 16 is not a multiple of the Q8_0 block" -- \
  "$bin" convert "$fixtures/hf/qwen3moe" -o "$tmp/note.gguf" --type q8_0
check "legacy ssm_in" 0 "blk.0.ssm_in.weight" -- \
  "$bin" convert "$fixtures/hf/qwen3next" -o "$tmp/legacy.gguf" --ssm-in
check "convert help" 0 "usage: moeserve convert HF_DIR -o OUT.gguf" -- "$bin" convert --help
check "convert no output" 2 "usage: moeserve convert" -- "$bin" convert "$fixtures/hf/llama"
check "convert bad type" 1 "--type 'q4_k' is not one of f32, f16, bf16, q8_0" -- \
  "$bin" convert "$fixtures/hf/llama" -o "$tmp/x.gguf" --type q4_k
check "convert missing dir" 1 "$tmp/none: not a directory" -- "$bin" convert "$tmp/none" -o "$tmp/x.gguf"
check "convert unknown flag" 1 "unknown option '--fast'" -- "$bin" convert "$fixtures/hf/llama" -o "$tmp/x.gguf" --fast
check "convert ssm-in on llama" 1 "--ssm-in applies to qwen3next models only" -- \
  "$bin" convert "$fixtures/hf/llama" -o "$tmp/x.gguf" --ssm-in
[[ ! -e "$tmp/x.gguf" ]] || { echo "FAIL: a refused conversion left $tmp/x.gguf"; failed=$((failed + 1)); }

for p in tiny-qwen3next tiny-qwen3moe tiny-qwen3 tiny-llama; do
  check "synth $p" 0 "^$tmp/$p.gguf: " -- "$bin" synth --preset "$p" -o "$tmp/$p.gguf" --quiet
done
check "inspect synth qwen3next" 0 "qwen3next: 4 layers \(3 delta-net, 1 attention\), 8 experts top-2 \+ shared" -- \
  "$bin" inspect "$tmp/tiny-qwen3next.gguf"
check "synth overrides" 0 "qwen3next, 2 layers" -- \
  "$bin" synth --preset tiny-qwen3next --layers 2 --experts 4 --expert-type q4_k --other-type f16 \
  --tokenizer "$fixtures/hf/qwen3next/tokenizer.json" --seed 9 -o "$tmp/o.gguf"
check "synth overrides inspect" 0 "4 experts top-2" -- "$bin" inspect "$tmp/o.gguf"
check "synth help" 0 "qwen3-coder-next +Qwen3-Coder-Next" -- "$bin" synth --help
check "synth no preset" 2 "usage: moeserve synth" -- "$bin" synth -o "$tmp/y.gguf"
check "synth unknown preset" 1 "unknown preset 'qwen4'" -- "$bin" synth --preset qwen4 -o "$tmp/y.gguf"
check "synth bad count" 1 "--layers 'many' is not a positive count" -- \
  "$bin" synth --preset tiny-llama --layers many -o "$tmp/y.gguf"
check "synth bad type" 1 "--expert-type 'q9' is not a ggml type name" -- \
  "$bin" synth --preset tiny-qwen3moe --expert-type q9 -o "$tmp/y.gguf"
check "synth activation type" 1 "Q8_K weights are not supported" -- \
  "$bin" synth --preset tiny-llama --other-type q8_k -o "$tmp/y.gguf"
check "synth bad seed" 1 "--seed '-3' is not a non-negative integer" -- \
  "$bin" synth --preset tiny-llama --seed -3 -o "$tmp/y.gguf"
[[ ! -e "$tmp/y.gguf" ]] || { echo "FAIL: a refused synth left $tmp/y.gguf"; failed=$((failed + 1)); }

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
