#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and starts moeserve. Arguments go to the command.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec build/moeserve types "$@"
