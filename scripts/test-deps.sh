#!/usr/bin/env bash
# test-deps.sh installs what `make test` needs, so that a fresh machine runs
# the whole suite with nothing done by hand:
#   - Debian packages (redis-server, Chromium, FastAPI/uvicorn/PyJWT/cryptography)
#     when they are missing: installed when running as root, otherwise the
#     script stops at once with the exact command to run;
#   - the pinned npm packages of the interop and conformance suites (Node 22,
#     real MCP clients and servers) into e2e/npm/node_modules, from
#     e2e/npm/package-lock.json (`npm ci`), redone only when the lock changes.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
/usr/bin/python3 -c 'import fastapi, uvicorn, jwt, cryptography' >/dev/null 2>&1 ||
  need+=(python3-fastapi python3-uvicorn python3-jwt python3-cryptography)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: missing Debian packages: ${need[*]}" >&2
    echo "test-deps: run this once, then make test again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "test-deps: installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# npm packages: reinstall only when the lock file changed since the last
# install (the stamp holds the lock's hash).
dir=e2e/npm
stamp=$dir/node_modules/.harness-lock-sha256
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "test-deps: installing pinned npm packages into $dir/node_modules"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi
