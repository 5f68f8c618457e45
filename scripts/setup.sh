#!/usr/bin/env bash
# Installs what moeserve needs (Debian packages listed in scripts/deps.txt; Node.js + npm for the
# client tests) and builds it into build/. Safe to re-run: installs only what is missing and
# rebuilds only what changed (ccache).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
while read -r pkg; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/deps.txt
# Node.js may come from another Debian source (e.g. nodesource's nodejs, which bundles npm).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages the tests compare against (tests/clients): installed again only when the lock file
# changed since the last install.
if [ -f tests/clients/package-lock.json ]; then
  stamp=tests/clients/node_modules/.moeserve-installed-lock
  if ! cmp -s tests/clients/package-lock.json "$stamp"; then
    echo "setup: npm ci in tests/clients"
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/clients/package-lock.json "$stamp"
  fi
fi

# ccache shares compiled objects between clones (CI builds a fresh clone each time): paths are
# made relative to the clone and its directory is left out of the hash.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true
build_type="${MOESERVE_BUILD_TYPE:-RelWithDebInfo}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" ${MOESERVE_CMAKE_ARGS:-} >/dev/null
cmake --build build --parallel "$(nproc)"
