"""One GRPO policy update of rayalign's training engine alone, on a GPU: tokens/s and MFU.

No Ray and no vLLM: the GPU machine has torch, transformers and peft, and DeepSpeed travels as a
wheel (bench/gpu_check.sh). This script imports only those and rayalign modules that import
nothing else (engines.training, engines.distributed, workers.rl_objectives, the config schema).

The model is random-initialised with the shape of Qwen2.5-0.5B or Qwen2.5-1.5B (the Qwen2Config
values are written out below; nothing is downloaded). One update is `--rollouts` sequences of
`--prompt-tokens` + `--response-tokens` tokens (as a GRPO step of prompts x samples would give),
in micro-batches of `--micro-batch` under gradient accumulation, through the engine's
`train_step` with the clipped policy loss of workers/rl_objectives.py (log-probs chunked over
rows, so the float32 vocabulary temporaries stay bounded). The first `--warmup` updates are
dropped; figures are medians over the `--steps` after them.

Update FLOPs (printed as `update_tflop`): a full fine-tune costs 6 x N_body x T + 6 x N_head x R
+ 12 x layers x hidden x S x T (forward and backward: weights, the vocabulary head on the response
positions only, and the attention scores over the S-token sequence, PaLM's convention, causal
mask not halved), where T is all tokens of the update, R its response tokens, N_body the
transformer's parameters without embeddings and N_head the vocabulary head's. With LoRA the frozen
base still runs forward and back-propagates to its inputs: 4 x N_body x T + 4 x N_head x R plus the
attention term, + 6 x N_lora x T. MFU is that over the median update time, over `--peak-tflops`
(790, the H200's bf16 figure of issue 15, on a GPU).

Precision: `bf16` trains bfloat16 weights (DeepSpeed's bf16 path), `autocast_bf16` keeps float32
master weights and runs the forward under torch.autocast (`train.autocast`), `fp32` is plain.

Run on a GPU:  python bench/gpu_update.py --model 0.5b    (and --model 1.5b; see gpu_check.sh)
Run here:      python bench/gpu_update.py --tiny           (a two-layer model on the CPU: proves it runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

# Qwen2.5 shapes from their published config.json files.
SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=True),
}
COMMON = dict(max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6, hidden_act="silu")
PRECISIONS = {"bf16": ("bfloat16", None), "autocast_bf16": ("float32", "bfloat16"), "fp32": ("float32", None)}


def build_model(shape: str, device: str, lora_rank: int):
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**SHAPES[shape], **COMMON)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if lora_rank:
        from rayalign.config import LoraConfig
        from rayalign.models.adapt import apply_lora

        model = apply_lora(model, LoraConfig(r=lora_rank, alpha=2 * lora_rank,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"]))
    return model, config


def update_flops(model, config, tokens: int, response_tokens: int, seq: int, lora: bool) -> float:
    """The update's FLOPs by the formula in the module docstring."""
    embedding = config.vocab_size * config.hidden_size
    names = {name: p.numel() for name, p in model.named_parameters()}
    adapter = sum(n for name, n in names.items() if "lora_" in name)
    body = sum(names.values()) - adapter - embedding * (1 if config.tie_word_embeddings else 2)
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq * tokens
    passes = 4 if lora else 6
    return passes * body * tokens + passes * embedding * response_tokens + attention + 6 * adapter * tokens


def rollout_batches(args, vocab: int) -> list[dict]:
    """Micro-batches shaped as rayalign's RL pipeline collates rollouts, with every row full."""
    seq, width = args.prompt_tokens + args.response_tokens, args.response_tokens
    batches = []
    for _ in range(args.rollouts // args.micro_batch):
        ids = torch.randint(0, vocab, (args.micro_batch, seq))
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "position_ids": torch.arange(seq).expand(args.micro_batch, -1),
                        "response_mask": torch.ones(args.micro_batch, width), "normaliser": args.rollouts * width,
                        "advantages": torch.randn(args.micro_batch, width)})
    return batches


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("0.5b", "1.5b"), default="0.5b")
    parser.add_argument("--tiny", action="store_true", help="a two-layer model and a small batch on the CPU")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="bf16")
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank on every projection; 0 trains in full")
    parser.add_argument("--rollouts", type=int, default=64, help="sequences per update")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--response-tokens", type=int, default=768)
    parser.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed updates")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates before them")
    parser.add_argument("--peak-tflops", type=float, help="device peak for MFU (default 790 on a GPU, none on CPU)")
    args = parser.parse_args()
    if args.tiny:
        args.rollouts, args.micro_batch, args.prompt_tokens, args.response_tokens = 8, 4, 16, 16
    if args.rollouts % args.micro_batch:
        parser.error("--rollouts must be a multiple of --micro-batch")
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    peak = args.peak_tflops or (790.0 if device == "cuda" else None)

    from rayalign.config import TrainConfig
    from rayalign.engines.distributed import close_process_group, init_process_group
    from rayalign.engines.training import TrainingEngine
    from rayalign.workers.rl_objectives import policy_objective

    backend = init_process_group(0, 1, "127.0.0.1", backend="auto")
    torch.manual_seed(0)
    shape = "tiny" if args.tiny else args.model
    model, config = build_model(shape, device, args.lora)
    dtype, autocast = PRECISIONS[args.precision]
    accumulation = args.rollouts // args.micro_batch
    train = TrainConfig(micro_batch_size=args.micro_batch, gradient_accumulation_steps=accumulation, lr=1e-6,
                        lr_scheduler="constant", zero_stage=args.zero_stage, autocast=autocast)
    engine = TrainingEngine(model, train, total_steps=args.warmup + args.steps, world_size=1, dtype=dtype)
    batches, objective = rollout_batches(args, config.vocab_size), policy_objective()

    seconds, stats = [], {}
    for step in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        stats = engine.train_step(batches, objective)
        synchronize(device)
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
    close_process_group()

    tokens = args.rollouts * (args.prompt_tokens + args.response_tokens)
    flops = update_flops(engine.module, config, tokens, args.rollouts * args.response_tokens,
                         args.prompt_tokens + args.response_tokens, bool(args.lora))
    update_s = statistics.median(seconds)
    tflops = flops / update_s / 1e12
    print(json.dumps({
        "bench": "gpu_update", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "backend": backend, "model": f"qwen2.5-{shape}-shaped (random init)", "precision": args.precision,
        "lora_rank": args.lora, "zero_stage": args.zero_stage, "rollouts": args.rollouts,
        "micro_batch": args.micro_batch, "seq": args.prompt_tokens + args.response_tokens,
        "tokens_per_update": tokens, "update_s_median": round(update_s, 4), "update_s": [round(s, 4) for s in seconds],
        "tokens_per_s": round(tokens / update_s, 1), "update_tflop": float(f"{flops / 1e12:.4g}"),
        "tflops": float(f"{tflops:.4g}"), "peak_tflops": peak, "mfu": float(f"{tflops / peak:.4g}") if peak else None,
        "peak_memory_gib": round(stats["peak_memory_gib"], 2), "loss": round(stats["loss"], 5),
    }), flush=True)


if __name__ == "__main__":
    main()
