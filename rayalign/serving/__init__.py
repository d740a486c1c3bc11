"""Serving tuned models with Ray Serve: the OpenAI-compatible policy endpoint (base models with
their LoRA adapters, full fine-tunes), reward and judge endpoints, API keys (see app.py)."""

from rayalign.serving.loopback import bind_replica_servers_to_loopback

bind_replica_servers_to_loopback()
