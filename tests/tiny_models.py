"""Tiny Spikformers for method tests, built directly on the torch backend (no CLI, no cache)."""

from __future__ import annotations

import functools

import torch

from conftest import TINY_PROTOCOL
from stxbench.api import NeuronSpec, Surrogate
from stxbench.run.protocol import Protocol
from stxbench.run.training import train_stage
from stxbench_backend_torch import TorchBackend
from stxbench_dataset_digits import Digits
from stxbench_model_spikformer.spikformer import Spikformer
from stxbench_neuron_lif import LIF

#: Epochs that take the tiny model (spikformer-1-16, T=2) well off chance (~0.58) in ~2 s.
TRAINED_EPOCHS = 12
CPU = torch.device("cpu")


def factory(spec: NeuronSpec, backend=None):
    backend, surrogate = backend or TorchBackend(), Surrogate()
    return lambda site: backend.make_neuron(spec, site, surrogate)


def tiny_model(spec: NeuronSpec = LIF, seed: int = 0, backend=None) -> Spikformer:
    """spikformer-1-16 on 8x8x1 digits, T=2, pools=2 (4 tokens): exactly 7,600 parameters."""
    torch.manual_seed(seed)
    return Spikformer(depth=1, dim=16, input_shape=(1, 8, 8), num_classes=10, T=2,
                      make_neuron=factory(spec, backend), pools=2)


@functools.cache
def digits():
    return Digits().load(None)


def tiny_protocol(dense_epochs: int) -> Protocol:
    import tomllib

    return Protocol.model_validate(tomllib.loads(TINY_PROTOCOL.format(dense_epochs=dense_epochs)))


@functools.cache
def _trained_state() -> dict[str, torch.Tensor]:
    model = tiny_model()
    train_stage(model, digits(), tiny_protocol(TRAINED_EPOCHS).train, name="dense", seed=0, device=CPU)
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_tiny_model() -> Spikformer:
    """The tiny LIF model after dense training on digits (trained once per test session)."""
    model = tiny_model()
    model.load_state_dict(_trained_state())
    return model.eval()


@torch.no_grad()
def logits_on_test_split(model: torch.nn.Module) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on the whole digits test split."""
    model.eval()
    x, _ = digits().test.tensors
    return model(x)


def finetune(model: torch.nn.Module, epochs: int = 1) -> None:
    """The tiny protocol's fine-tune stage (AdamW, lr 1e-3, no weight decay)."""
    stage = tiny_protocol(2).finetune.model_copy(update={"epochs": epochs})
    train_stage(model, digits(), stage, name="finetune", seed=0, device=CPU)


def lively_spikformer(host, T: int):
    """spikformer-1-16 on 8x8 digits-shaped input (LIF, atan, pools 2), seed 0, in eval mode,
    with BN biases raised so that every layer fires (an untrained model is nearly silent).
    Returns the model and the generator that drew the biases, for the caller's next draws."""
    backend, lif = host.backend("torch"), host.neuron("lif")
    torch.manual_seed(0)
    model = host.model_family("spikformer").build(
        "1-16", input_shape=(1, 8, 8), num_classes=10, T=T, options={"pools": 2},
        make_neuron=lambda site: backend.make_neuron(lif, site, Surrogate("atan", None)),
    ).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.bias.copy_(torch.rand(module.bias.shape, generator=gen) * 3)
    return model, gen
