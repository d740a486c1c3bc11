#!/usr/bin/env bash
# Start a single-node Ray head for rayalign jobs: every listener on 127.0.0.1, token auth on
# (a token is generated into ~/.ray/auth_token if there is none; `rayalign submit` and
# `rayalign jobs` send it), the job server at http://127.0.0.1:8265. Stop it with `ray stop`.
# To reach it from other machines, name the address to listen on: RAYALIGN_RAY_HOST=10.0.0.5
# (token auth stays on; this script refuses RAY_AUTH_MODE=disabled).
# Usage: [RAYALIGN_RAY_HOST=ADDRESS] cluster/start-head.sh [extra `ray start` flags, e.g. --num-cpus 8]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"          # the jobs' python is the first on this PATH
host="${RAYALIGN_RAY_HOST:-127.0.0.1}"
if [ "$host" = 127.0.0.1 ] || [ "$host" = localhost ]; then
  host=127.0.0.1
  # Ray turns --node-ip-address 127.0.0.1 into the machine's address (and binds everything
  # to all interfaces) unless this is 0 when it starts.
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
fi
if [ "${RAY_AUTH_MODE:-token}" != token ]; then
  echo "start-head.sh: RAY_AUTH_MODE=$RAY_AUTH_MODE: this head is for others to use, token auth stays on" >&2
  exit 2
fi
export RAY_AUTH_MODE=token                  # explicit: a head without a token file would start open
ray get-auth-token --generate > /dev/null
ray start --head --node-ip-address "$host" --dashboard-host "$host" --disable-usage-stats "$@"
