"""One evaluation for every method (`rayalign eval`, the held-out checks of RL and prompting).

    stats.py     means with 95% intervals, pass@k (pure math)
    evaluate.py  answers from a generation function, scored by reward sources, summed up
                 into the evaluation result every report reads
"""
