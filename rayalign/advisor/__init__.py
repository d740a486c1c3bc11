"""The method advisor: which of prompting, SFT, synthetic data, RLAIF and RLHF fits a case.

    framework.py  the four questions, the answers (with their evidence), the recommendation
    plans.py      a method as commands on the shipped recipes, filled with the user's model and data

`rayalign advise` (rayalign/cli/advise.py) asks the questions or reads them from flags.
"""
