"""rayalign: Ray-distributed tuning of language models (prompting, SFT, RLHF, RLAIF, synthetic data)."""

__version__ = "0.1.0"
