#!/usr/bin/env bash
# Submit a rayalign command as a Ray job. The folder in RAYALIGN_WORKDIR (default: the
# current one) is uploaded as the job's working directory, so relative data paths work;
# give `output_dir=` an absolute path on storage the cluster keeps, or the run folder goes
# away with the job's temporary working directory.
# Usage: RAY_ADDRESS=http://127.0.0.1:8265 cluster/submit.sh sft --config my.yaml output_dir=/shared/runs
set -euo pipefail
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"   # the token is read from ~/.ray/auth_token
exec ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" \
    --working-dir "${RAYALIGN_WORKDIR:-$PWD}" -- rayalign "$@"
