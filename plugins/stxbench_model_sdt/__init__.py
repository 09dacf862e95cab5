"""Model family ``sdt``: the Spike-driven Transformer V1 (Yao et al., NeurIPS 2023), sizes
``sdt-DEPTH-WIDTH`` (``sdt-2-512`` CIFAR, ``sdt-2-256`` CIFAR10-DVS, ``sdt-8-768`` ImageNet).

Options (protocol ``[model.options]``): ``heads`` (8), ``mlp_ratio`` (4), ``pools`` (max-pools
in the stem; default: down to 8x8 tokens for images, 16 for sequences), ``erode`` (false; the
code's ``dvs_mode`` 3x3 max-pools in attention, used on CIFAR10-DVS). See `.model` for what is
computed and how it follows the original code.
"""

from __future__ import annotations

from stxbench.api import MakeNeuron, ModelFamily, UsageError, hookimpl
from stxbench_model_sdt.model import SpikeDrivenTransformer, parse_size

NUMBER_OPTIONS = {"heads": int, "pools": int, "mlp_ratio": (int, float)}
OPTIONS = {*NUMBER_OPTIONS, "erode"}


class SDTFamily(ModelFamily):
    name = "sdt"
    summary = ("Spike-driven Transformer V1 (membrane shortcut, SDSA: masks and column sums, "
               "binary inputs to every weight matrix); sizes sdt-DEPTH-WIDTH")

    def build(self, size, *, input_shape, num_classes, T, make_neuron: MakeNeuron, options):
        unknown = set(options) - OPTIONS
        if unknown:
            raise UsageError(
                f"unknown sdt option(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(OPTIONS))}"
            )
        for key, value in options.items():
            if key == "erode":
                if not isinstance(value, bool):
                    raise UsageError(f"sdt option erode must be true/false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, NUMBER_OPTIONS[key]):
                kind = "a number" if key == "mlp_ratio" else "a whole number"
                raise UsageError(f"sdt option {key} must be {kind}, got {value!r}")
        depth, dim = parse_size(size)
        return SpikeDrivenTransformer(
            depth=depth, dim=dim, input_shape=tuple(input_shape), num_classes=num_classes, T=T,
            make_neuron=make_neuron, **options,
        )


@hookimpl
def stxbench_add_models():
    return [SDTFamily()]
