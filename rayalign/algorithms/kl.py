"""Per-token estimators of KL(pi || ref) from tokens sampled from pi (Schulman, "Approximating
KL divergence", 2020): k1 is unbiased but noisy and can be negative, k2 is low-variance but
biased, k3 is unbiased, low-variance and never negative.
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate from the sampled tokens' log-probabilities under pi (`logp`) and ref."""
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio ** 2
    if kind == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1
    raise ValueError(f"unknown KL estimator {kind!r}; choose from {KL_ESTIMATORS}")
