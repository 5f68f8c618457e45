#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and starts the server: `moeserve serve`, on 127.0.0.1:8080
# unless told otherwise. Arguments go to it (e.g. -m MODEL.gguf --port 8085 -c 32768).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# With no -m, moeserve serve serves the bundled demo model (models/moeserve-demo-qwen3next.gguf).
exec build/moeserve serve "$@"
