"""The model contract (`stxbench.models.base`, re-exported by `stxbench.api`). Model families
are plugins: Spikformer is `plugins/stxbench_model_spikformer`."""
