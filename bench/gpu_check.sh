#!/usr/bin/env bash
# The GPU check of issue 15 (item 6): rayalign's training engine alone on the lent GPU machine.
#
# That machine has torch, transformers and peft, but no DeepSpeed and no network. DeepSpeed and
# those of its dependencies the machine may lack travel as wheels in bench/wheels (ignored by git,
# so the device run names it in `carry`; about 14 MiB in all, under the 64 MiB limit).
#
#   bench/gpu_check.sh wheels   here, with network: build or fetch the wheels into bench/wheels
#   bench/gpu_check.sh          on the GPU machine: install them into a venv over the system's
#                               packages (nothing else changes) and run bench/gpu_update.py
#
# Each gpu_update.py run prints one JSON line (tokens/s, TFLOP/s, MFU); the runs together stay
# under 6 minutes on an H200.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=bench/wheels
PY=${PYTHON:-python3}

if [[ "${1:-run}" == wheels ]]; then
    PIP=${PIP:-/work/devvenv/bin/pip}
    mkdir -p "$WHEELS"
    # DeepSpeed as a pure-Python wheel (its ops are built at first use, which this check never needs).
    DS_BUILD_OPS=0 "$PIP" wheel --no-deps "deepspeed==$("$PIP" show deepspeed | sed -n 's/^Version: //p')" -w "$WHEELS"
    # Its dependencies at the versions of this venv; the compiled ones for every CPython the
    # GPU machine might run.
    pins() { for p in "$@"; do echo "$p==$("$PIP" show "$p" | sed -n 's/^Version: //p')"; done; }
    "$PIP" download --no-deps -d "$WHEELS" $(pins hjson py-cpuinfo einops pydantic annotated-types typing-inspection)
    for version in 3.10 3.11 3.12 3.13; do
        "$PIP" download --no-deps --only-binary=:all: --python-version "$version" \
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$WHEELS" \
            $(pins pydantic_core msgpack ninja)
    done
    du -sh "$WHEELS"
    exit 0
fi

VENV=${VENV:-/tmp/rayalign-gpu-venv}
"$PY" -m venv --system-site-packages "$VENV"
# --no-index: only the carried wheels; what the system already has (torch, numpy, ...) satisfies the rest.
"$VENV/bin/pip" install --quiet --no-index --find-links "$WHEELS" deepspeed
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$VENV/bin/python" -c "import torch, deepspeed; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__, torch.cuda.get_device_name())" >&2
for run in "--model 0.5b --precision bf16" "--model 1.5b --precision bf16" "--model 1.5b --precision autocast_bf16"; do
    # shellcheck disable=SC2086
    timeout 150 "$VENV/bin/python" bench/gpu_update.py $run || echo "{\"bench\": \"gpu_update\", \"args\": \"$run\", \"failed\": $?}"
done
