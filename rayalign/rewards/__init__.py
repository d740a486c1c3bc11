"""Reward sources behind one call: (prompts, completions, metadata) -> list of floats.

    mix.py          build_rewards(configs) -> RewardMix: weighted total + each source's scores
    function.py     FunctionReward: a Python function `pkg.module:fn`, called TRL-style
    remote.py       HttpReward (any JSON scorer) and JudgeReward (rayalign serve's /v1/judge)
    judge.py        the AI critic's logic behind /v1/judge: prompts, reply grammar, parsing, order swap
    reward_model.py RewardModelScorer: a trained reward model, normalised by its saved stats
    quickstart.py   the shipped rule rewards of the quickstart task
    values.py       RewardError and the check every returned list of rewards goes through
"""
