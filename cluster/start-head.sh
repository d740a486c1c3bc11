#!/usr/bin/env bash
# Start a single-node Ray head for rayalign jobs: every listener on 127.0.0.1, token auth on
# (a token is generated into ~/.ray/auth_token if there is none; `rayalign submit` and
# `rayalign jobs` send it), the job server at http://127.0.0.1:8265. Stop it with `ray stop`.
# Usage: cluster/start-head.sh [extra `ray start` flags, e.g. --num-cpus 8 --num-gpus 2]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"          # the jobs' python is the first on this PATH
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0  # every listener on 127.0.0.1
export RAY_AUTH_MODE=token                  # explicit: a head without a token file would start open
ray get-auth-token --generate > /dev/null
ray start --head --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 --disable-usage-stats "$@"
