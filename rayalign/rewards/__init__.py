"""Reward sources behind one call: (prompts, completions, metadata) -> list of floats."""
