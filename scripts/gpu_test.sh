#!/usr/bin/env bash
# GPU test run: the GPU test suite, then every CUDA benchmark the build has, then a summary table.
#   scripts/gpu_test.sh BUILD_DIR
# BUILD_DIR is a CUDA build (cmake -DMOESERVE_CUDA=ON) or a flat copy of its binaries; binaries are
# looked up in BUILD_DIR, BUILD_DIR/tests and BUILD_DIR/benchmarks. Environment:
#   GPU_TEST_FILTER=...   gtest filter for the test suite (default: all)
#   GPU_TEST_SANITIZE=1   also run the suite under compute-sanitizer (memcheck), if installed
#   GPU_TEST_MODEL_BENCH=0 skip the whole-model benchmarks (synthetic Qwen3-Coder-Next, ~23 GiB
#                         written to GPU_BENCH_DIR, default /tmp; GPU_BENCH_THREADS, GPU_BENCH_REPS)
# Logs go to BUILD_DIR/gpu_test_logs/. Exit status: 0 when every step passed.
set -uo pipefail

if [[ $# -ne 1 || ! -d "$1" ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The GPU tests read the repository's fixtures wherever this checkout is.
export MOESERVE_TEST_FIXTURES=${MOESERVE_TEST_FIXTURES:-$repo/tests/fixtures}
logs="$build/gpu_test_logs"
mkdir -p "$logs"

find_binary() {
  local name=$1 dir
  for dir in "$build" "$build/tests" "$build/benchmarks"; do
    if [[ -x "$dir/$name" ]]; then
      echo "$dir/$name"
      return 0
    fi
  done
  return 1
}

names=()
results=()
times=()
run_step() {  # run_step NAME LOG COMMAND...
  local name=$1 log=$2
  shift 2
  echo "=== $name: $*"
  local start=$SECONDS
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  names+=("$name")
  times+=("$((SECONDS - start))")
  if [[ $rc -eq 0 ]]; then results+=("ok"); else results+=("FAILED (exit $rc)"); fi
}

if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi

filter=${GPU_TEST_FILTER:-*}
if tests=$(find_binary moeserve_gpu_tests); then
  run_step "gpu tests" "$logs/gpu_tests.log" "$tests" --gtest_filter="$filter"
  if [[ "${GPU_TEST_SANITIZE:-0}" == 1 ]]; then
    sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    if [[ -x "$sanitizer" ]]; then
      run_step "memcheck" "$logs/memcheck.log" "$sanitizer" --tool memcheck --error-exitcode 1 \
        "$tests" --gtest_filter="$filter"
    else
      names+=("memcheck"); results+=("skipped (no compute-sanitizer)"); times+=(0)
    fi
  fi
else
  names+=("gpu tests"); results+=("MISSING moeserve_gpu_tests"); times+=(0)
fi

# Benchmarks: every bench_cuda_* program of the build.
shopt -s nullglob
for dir in "$build" "$build/benchmarks"; do
  for bench in "$dir"/bench_cuda_*; do
    [[ -x "$bench" && -f "$bench" ]] || continue
    name=$(basename "$bench")
    run_step "$name" "$logs/$name.log" "$bench"
  done
done

# Whole-model benchmarks (issue targets): a synthetic Qwen3-Coder-Next (48 layers, IQ2_XS experts,
# Q8_0 elsewhere, ~23 GiB) written once to GPU_BENCH_DIR, then `moeserve bench` with q8_0 K/V and
# flash attention for each placement. GPU_TEST_MODEL_BENCH=0 skips this part.
if [[ "${GPU_TEST_MODEL_BENCH:-1}" == 1 ]] && moeserve=$(find_binary moeserve); then
  bench_dir=${GPU_BENCH_DIR:-/tmp}
  model="$bench_dir/qwen3-coder-next-synth-iq2_xs.gguf"
  threads=${GPU_BENCH_THREADS:-$(nproc)}
  if [[ ! -f "$model" ]]; then
    run_step "synth model" "$logs/synth.log" "$moeserve" synth --preset qwen3-coder-next --expert-type IQ2_XS \
      --other-type Q8_0 --quiet -o "$model"
  fi
  common=(-m "$model" -fa on -ctk q8_0 -ctv q8_0 -t "$threads" -r "${GPU_BENCH_REPS:-3}" -o md)
  run_step "bench (a) all on GPU" "$logs/bench_a.log" "$moeserve" bench "${common[@]}" -p 512 -n 128
  run_step "bench (b) --n-cpu-moe 11" "$logs/bench_b.log" "$moeserve" bench "${common[@]}" -p 512 -n 128 --n-cpu-moe 11
  run_step "bench (c) --cpu-moe" "$logs/bench_c.log" "$moeserve" bench "${common[@]}" -p 512 -n 128 --cpu-moe
  run_step "bench (d) depth 32768" "$logs/bench_d.log" "$moeserve" bench "${common[@]}" -p 0 -n 128 -d 32768 -c 33280
  run_step "bench CPU only" "$logs/bench_cpu.log" "$moeserve" bench "${common[@]}" -p 512 -n 32 -r 1 -ngl 0
  # Where (a)'s decode step goes, kernel by kernel (tools/kernel_trace), where the build has the
  # tracing library.
  if trace_lib=$(find_binary libmoeserve_kernel_trace.so) && command -v python3 > /dev/null; then
    run_step "kernel trace (a)" "$logs/kernel_trace_bench.log" env CUDA_INJECTION64_PATH="$trace_lib" \
      KERNEL_TRACE_OUT="$logs/kernel_trace.txt" "$moeserve" bench "${common[@]}" -p 0 -n 32 -r 2
    run_step "critical path (a)" "$logs/critical_path.log" python3 "$repo/tools/kernel_trace/critical_path.py" \
      "$logs/kernel_trace.txt"
  fi
fi

echo
echo "=== summary ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
printf '%-32s %-28s %8s\n' step result seconds
status=0
for i in "${!names[@]}"; do
  printf '%-32s %-28s %8s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  [[ "${results[$i]}" == ok || "${results[$i]}" == skipped* ]] || status=1
done
if [[ -f "$logs/critical_path.log" ]]; then
  echo "  critical path of (a)'s decode step (tracing slows it by ~12%):"
  sed -n '1,14p' "$logs/critical_path.log" | sed 's/^/    /'
fi
if [[ -f "$logs/gpu_tests.log" ]]; then
  grep -E '^\[  (PASSED|FAILED)  \]|tests? ran' "$logs/gpu_tests.log" | sed 's/^/  /'
fi
for log in "$logs"/bench_*.log; do
  [[ -f "$log" ]] || continue
  echo "  $(basename "$log" .log): $(grep -m1 -E '^placement|CUDA0:' "$log" || true)"
  grep -E '^\|.*(pp|tg)[0-9]' "$log" | sed 's/^/    /'
done
exit $status
