"""Pruner ``none``: leaves the model dense.

The fine-tune stage still runs after it, so a dense row gets the same training budget as every
pruned row of the leaderboard.
"""

from stxbench.api import Pruner, PrunerParams, hookimpl


class NoPruning(Pruner):
    name = "none"
    summary = "no pruning (dense baseline; still fine-tuned, for an equal training budget)"
    Params = PrunerParams

    def prune(self, model, params) -> None:
        return None


@hookimpl
def stxbench_add_pruners():
    return [NoPruning()]
