#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test: unit tests, script tests against the
# Python/Node references, then the slow label (large corpora, whole models). Safe to re-run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cd build
# Everything but the slow label first, then the slow label: one ctest run each, one summary line each.
ctest --output-on-failure --parallel "$(nproc)" --label-exclude slow --timeout 600
# (Listed into a variable first: `ctest | grep -q` under pipefail fails when grep exits early.)
slow_tests=$(ctest --show-only=json-v1 --label-regex slow)
if grep -q '"name"' <<<"$slow_tests"; then
  ctest --output-on-failure --parallel "$(nproc)" --label-regex slow --timeout 1200
fi
