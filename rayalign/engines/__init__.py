"""The only code that touches DeepSpeed (training) and vLLM (generation). Usable without Ray."""
