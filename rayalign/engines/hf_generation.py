"""The fallback generation engine: transformers `generate` on the rollout model (no vLLM
needed), with the same interface as engines/generation.py's VllmEngine."""

from __future__ import annotations

import shutil

import torch

from rayalign.config import RolloutConfig
from rayalign.data.rollouts import Continuation, Sample
from rayalign.engines.weight_files import ADAPTER_FILE, WEIGHTS_FILE, adapter_payload, write_payload


def _cut_at_stop(reply: Continuation, stop: list[str]) -> Continuation:
    """The reply up to the first stop string (left out, as vLLM does), its tokens cut to match."""
    ends = [reply.text.find(s) for s in stop if s in reply.text]
    if not ends:
        return reply
    end = min(ends)
    length, kept = 0, 0
    while kept < len(reply.tokens) and length < end:
        length += len(reply.tokens[kept])
        kept += 1
    return Continuation(reply.text[:end], reply.tokens[:kept], reply.top_logprobs[:kept])


class HfEngine:
    """The fallback: transformers `generate` on the same model (no vLLM needed)."""

    def __init__(self, model_folder: str, rollout: RolloutConfig, seed: int = 0, lora_rank: int | None = None):
        from rayalign.models.loading import DTYPES, load_tokenizer

        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=DTYPES[rollout.dtype]).eval()
        self.tokenizer = load_tokenizer(model_folder)
        self.rollout = rollout
        self.has_adapter = False
        self.weight_group = None
        torch.manual_seed(seed)

    def _padded(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and attention mask."""
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in sequences])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
        return ids, mask

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int = 1, greedy: bool = False,
                 max_new_tokens: int | None = None) -> list[list[Sample]]:
        from rayalign.algorithms.policy_loss import selective_logprobs

        ids, mask = self._padded(prompts)
        sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": self.rollout.temperature,
                                                        "top_p": self.rollout.top_p}
        out = self.model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=n,
                                  max_new_tokens=max_new_tokens or self.rollout.max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, output_logits=True,
                                  return_dict_in_generate=True, **sampling)
        responses = out.sequences[:, ids.shape[1]:]
        logprobs = selective_logprobs(torch.stack(out.logits, dim=1).float(), responses)  # raw, as vLLM reports
        eos = self.tokenizer.eos_token_id
        results = []
        for index, prompt in enumerate(prompts):
            group = []
            for row in range(index * n, (index + 1) * n):
                tokens = responses[row].tolist()
                end = tokens.index(eos) + 1 if eos in tokens else len(tokens)
                group.append(Sample(list(prompt), tokens[:end], logprobs[row, :end].tolist(), eos in tokens))
            results.append(group)
        return results

    @torch.no_grad()
    def continue_text(self, prompts: list[list[int]], max_new_tokens: int, top_logprobs: int = 0,
                      stop: list[str] | None = None, temperature: float = 0.0) -> list[Continuation]:
        ids, mask = self._padded(prompts)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0} if temperature else {"do_sample": False}
        out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, output_logits=True,
                                  return_dict_in_generate=True, **sampling)
        logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
        results = []
        for row, response in enumerate(out.sequences[:, ids.shape[1]:].tolist()):
            eos = self.tokenizer.eos_token_id
            response = response[: response.index(eos)] if eos in response else response
            tokens = [self.tokenizer.decode([token]) for token in response]
            tops = []
            if top_logprobs:
                values, indices = logprobs[row, : len(response)].topk(min(top_logprobs, logprobs.shape[-1]), dim=-1)
                tops = [{self.tokenizer.decode([i]): v for v, i in zip(vs.tolist(), ix.tolist())}
                        for vs, ix in zip(values, indices)]
            results.append(_cut_at_stop(Continuation("".join(tokens), tokens, tops), stop or []))
        return results

    def load_adapter(self, payload: dict[str, bytes], version: int) -> None:
        from peft import PeftModel, set_peft_model_state_dict
        from safetensors.torch import load

        if not self.has_adapter:
            folder = write_payload(payload)
            self.model = PeftModel.from_pretrained(self.model, folder).eval()
            shutil.rmtree(folder, ignore_errors=True)
            self.has_adapter = True
        else:
            set_peft_model_state_dict(self.model, load(payload[ADAPTER_FILE]))

    def load_weights(self, payload: dict[str, bytes]) -> None:
        from safetensors.torch import load

        state = load(payload[WEIGHTS_FILE])  # every weight, or just the merged LoRA targets
        unexpected = self.model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"weight sync sent names the model does not have: {unexpected[:5]}")

    def join_weight_group(self, address: str, port: int, first_rank: int, world_size: int, backend: str,
                          timeout_s: float) -> None:
        from rayalign.engines.weight_sync import join_weight_group

        self.weight_group_rank = first_rank
        self.weight_group = join_weight_group(address, port, first_rank, world_size, backend, timeout_s)

    @torch.no_grad()
    def receive_weights(self, manifest: dict, mode: str, version: int, bucket_bytes: int) -> None:
        """Receive one collective sync: each tensor copied in place as its bucket arrives, or an adapter."""
        from rayalign.engines.weight_sync import receive_buckets

        received = receive_buckets(self.weight_group, manifest["tensors"], bucket_bytes, self.model.device,
                                   self.weight_group_rank)
        if mode == "adapter":
            self.load_adapter(adapter_payload(received, manifest["adapter_config"]), version)
            return
        params = dict(self.model.named_parameters())
        for name, tensor in received:
            if name not in params:
                raise ValueError(f"weight sync sent {name!r}, which the model does not have")
            params[name].copy_(tensor)

    def close(self) -> None:
        self.weight_group = None
