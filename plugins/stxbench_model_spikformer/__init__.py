"""Spikformer (Zhou et al., ICLR 2023) as a model family: ``spikformer-DEPTH-WIDTH``.

A first-party plugin, registered by entry point exactly as a third-party model family would be."""

from __future__ import annotations

from stxbench.api import MakeNeuron, ModelFamily, UsageError, hookimpl
from stxbench_model_spikformer.spikformer import Spikformer, parse_size

SPIKFORMER_OPTIONS = {"heads", "mlp_ratio", "patch", "pools"}


class SpikformerFamily(ModelFamily):
    name = "spikformer"
    summary = "Spikformer (SPS stem, SSA + MLP blocks, no softmax); sizes spikformer-DEPTH-WIDTH"

    def build(self, size, *, input_shape, num_classes, T, make_neuron: MakeNeuron, options):
        unknown = set(options) - SPIKFORMER_OPTIONS
        if unknown:
            raise UsageError(
                f"unknown spikformer option(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(sorted(SPIKFORMER_OPTIONS))}"
            )
        depth, dim = parse_size(size)
        return Spikformer(
            depth=depth,
            dim=dim,
            input_shape=tuple(input_shape),
            num_classes=num_classes,
            T=T,
            make_neuron=make_neuron,
            **options,
        )


@hookimpl
def stxbench_add_models():
    return [SpikformerFamily()]
