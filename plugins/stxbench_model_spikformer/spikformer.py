"""Spikformer (Zhou et al., ICLR 2023), as in its CIFAR code, with neurons from a backend.

Layout: the stem works on feature maps ``[T, B, C, H, W]`` (``[T, B, C, L]`` for sequences);
the blocks on tokens ``[T, B, N, C]``. BatchNorm over tokens normalises each channel over
``T*B*N`` values, which is what the original's ``BatchNorm1d`` on ``[T*B, C, N]`` computes.

Spikformer-4-384 for 32x32x3 inputs and 10 classes has exactly 9,324,730 parameters: the
original code's unused LayerNorms are left out.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from stxbench.api import MAX_MLP_RATIO, HiddenLayer, MakeNeuron, NeuronSite, NeuronSlot, SpikingModel, UsageError
from stxbench.api import parse_size as api_parse_size

ATTN_SCALE = 0.125  # Spikformer's fixed scale; no softmax
ATTN_THRESHOLD = 0.5  # the attention LIF fires at 0.5


def _bn_tokens(bn: nn.BatchNorm1d, y: Tensor) -> Tensor:
    return bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)


class MatMul(nn.Module):
    """A synaptic matmul between activations (``q @ k^T``, ``attn @ v``) as a module of its
    own, so that op counts attribute it to a named row."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class TokenLinear(nn.Module):
    """Linear -> BatchNorm -> neuron on tokens ``[T, B, N, C]``."""

    def __init__(self, name: str, d_in: int, d_out: int, make_neuron: MakeNeuron):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.neuron = NeuronSlot(NeuronSite(f"{name}.neuron", d_out, -1), make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(_bn_tokens(self.bn, self.linear(x)))


class SSA(nn.Module):
    """Spiking self-attention: q, k, v are spikes; ``attn = q @ k^T * 0.125``; no softmax."""

    def __init__(self, name: str, dim: int, heads: int, make_neuron: MakeNeuron):
        super().__init__()
        self.heads = heads
        self.q = TokenLinear(f"{name}.q", dim, dim, make_neuron)
        self.k = TokenLinear(f"{name}.k", dim, dim, make_neuron)
        self.v = TokenLinear(f"{name}.v", dim, dim, make_neuron)
        self.qk = MatMul()
        self.av = MatMul()
        self.attn_neuron = NeuronSlot(
            NeuronSite(f"{name}.attn_neuron", dim, -1, ATTN_THRESHOLD), make_neuron
        )
        self.proj = TokenLinear(f"{name}.proj", dim, dim, make_neuron)

    def _split_heads(self, x: Tensor) -> Tensor:
        T, B, N, C = x.shape
        return x.reshape(T, B, N, self.heads, C // self.heads).transpose(2, 3)

    def forward(self, x: Tensor) -> Tensor:
        T, B, N, C = x.shape
        q, k, v = (self._split_heads(m(x)) for m in (self.q, self.k, self.v))
        attn = self.qk(q, k.transpose(-2, -1)) * ATTN_SCALE
        out = self.av(attn, v).transpose(2, 3).reshape(T, B, N, C)
        return self.proj(self.attn_neuron(out))


class MLP(nn.Module):
    def __init__(self, name: str, dim: int, hidden: int, make_neuron: MakeNeuron):
        super().__init__()
        self.fc1 = TokenLinear(f"{name}.fc1", dim, hidden, make_neuron)
        self.fc2 = TokenLinear(f"{name}.fc2", hidden, dim, make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x))


class Block(nn.Module):
    def __init__(self, name: str, dim: int, heads: int, mlp_ratio: float, make_neuron: MakeNeuron):
        super().__init__()
        self.attn = SSA(f"{name}.attn", dim, heads, make_neuron)
        self.mlp = MLP(f"{name}.mlp", dim, int(dim * mlp_ratio), make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class SPS(nn.Module):
    """Spiking patch splitting: four conv-BN-neuron stages (D/8, D/4, D/2, D channels) with
    ``pools`` max-pools after the last ``pools`` of them, then a relative-position conv whose
    spikes are added to the features. Works in 2-D (images) or 1-D (sequences).

    With ``patch = P`` it is the *light stem* instead: one conv-BN-neuron stage whose kernel and
    stride are P (a ViT's patchify, C -> D), then the same relative-position conv. Its conv
    stages are then not a CNN in their own right, so the ST blocks hold the model's work (and
    most of its parameters): pruning them is what the model feels (docs/models.md)."""

    def __init__(self, in_channels: int, dim: int, pools: int, ndim: int, make_neuron: MakeNeuron,
                 patch: int | None = None):
        super().__init__()
        Conv, BN, Pool = (
            (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
            if ndim == 2
            else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        )
        channel_dim = -1 - ndim
        widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.pools = nn.ModuleList()
        if patch is not None:  # the light stem: one patchifying conv (kernel = stride = patch)
            widths, pools = [in_channels, dim], 0
        for i in range(len(widths) - 1):
            if patch is not None:
                self.convs.append(Conv(in_channels, dim, patch, patch, 0, bias=False))
            else:
                self.convs.append(Conv(widths[i], widths[i + 1], 3, 1, 1, bias=False))
            self.bns.append(BN(widths[i + 1]))
            site = NeuronSite(f"stem.neurons.{i}", widths[i + 1], channel_dim)
            self.neurons.append(NeuronSlot(site, make_neuron))
            pooled = i >= len(widths) - 1 - pools
            self.pools.append(Pool(3, 2, 1) if pooled else nn.Identity())
        self.rpe_conv = Conv(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = BN(dim)
        self.rpe_neuron = NeuronSlot(NeuronSite("stem.rpe_neuron", dim, channel_dim), make_neuron)

    def _conv_bn_neuron(self, conv, bn, neuron, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = bn(conv(x.flatten(0, 1)))
        return neuron(y.reshape(T, B, *y.shape[1:]))

    def forward(self, x: Tensor) -> Tensor:  # [T, B, C, *spatial] -> tokens [T, B, N, D]
        T, B = x.shape[:2]
        for conv, bn, neuron, pool in zip(self.convs, self.bns, self.neurons, self.pools):
            x = self._conv_bn_neuron(conv, bn, neuron, x)
            if not isinstance(pool, nn.Identity):
                y = pool(x.flatten(0, 1))
                x = y.reshape(T, B, *y.shape[1:])
        x = x + self._conv_bn_neuron(self.rpe_conv, self.rpe_bn, self.rpe_neuron, x)
        return x.flatten(3).transpose(-1, -2)


def default_pools(input_shape: tuple[int, ...]) -> int:
    """Halve the spatial size until it is at most 8 (images; 32 -> 8x8 tokens as in the CIFAR
    model, 128 -> 8x8 as in the DVS model) or 16 (sequences), at most four times."""
    size = max(input_shape[1:])
    target = 8 if len(input_shape) == 3 else 16
    pools = 0
    while size > target and pools < 4:
        size = math.ceil(size / 2)
        pools += 1
    return pools


class Spikformer(SpikingModel):
    def __init__(
        self,
        *,
        depth: int,
        dim: int,
        input_shape: tuple[int, ...],
        num_classes: int,
        T: int,
        make_neuron: MakeNeuron,
        heads: int | None = None,
        mlp_ratio: float = 4.0,
        pools: int | None = None,
        patch: int | None = None,
    ):
        super().__init__()
        heads = max(1, dim // 32) if heads is None else heads
        for key, value in (("heads", heads), ("pools", pools)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f"spikformer option {key} must be a whole number, got {value!r}")
        if (isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float))
                or not 0 < mlp_ratio <= MAX_MLP_RATIO or int(dim * mlp_ratio) < 1):
            raise UsageError(f"spikformer mlp_ratio must be a number in (0, {MAX_MLP_RATIO}] leaving at "
                             f"least one hidden unit at width {dim}, got {mlp_ratio!r}")
        if not 1 <= heads <= dim or dim % 8 or dim % heads:
            raise UsageError(
                f"spikformer width {dim} must be a multiple of 8 and of the head count {heads}"
            )
        if len(input_shape) not in (2, 3):
            raise UsageError(
                f"spikformer takes (C, H, W) images or (C, L) sequences, not shape {input_shape}"
            )
        if patch is not None:
            if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1 or pools not in (None, 0):
                raise UsageError(f"spikformer patch must be a whole number >= 1 and comes without pools, got {patch!r}")
            if any(size % patch for size in input_shape[1:]):
                raise UsageError(f"spikformer patch {patch} must divide the input size {input_shape[1:]}")
        pools = default_pools(input_shape) if pools is None and patch is None else (pools or 0)
        if not 0 <= pools <= 4:
            raise UsageError(f"spikformer pools must be in 0..4, got {pools}")
        self.T = T
        self.input_shape = tuple(input_shape)
        self.stem = SPS(input_shape[0], dim, pools, len(input_shape) - 1, make_neuron, patch)
        self.blocks = nn.ModuleList(
            Block(f"blocks.{i}", dim, heads, mlp_ratio, make_neuron) for i in range(depth)
        )
        self.head = nn.Linear(dim, num_classes)

    def st_matrix_names(self) -> list[str]:
        names = []
        for i in range(len(self.blocks)):
            names += [f"blocks.{i}.attn.{m}.linear" for m in ("q", "k", "v", "proj")]
            names += [f"blocks.{i}.mlp.{m}.linear" for m in ("fc1", "fc2")]
        return names

    def hidden_layers(self) -> list[HiddenLayer]:
        return [
            HiddenLayer(
                fc1=f"blocks.{i}.mlp.fc1.linear",
                bn=f"blocks.{i}.mlp.fc1.bn",
                neuron=f"blocks.{i}.mlp.fc1.neuron",
                fc2=f"blocks.{i}.mlp.fc2.linear",
            )
            for i in range(len(self.blocks))
        ]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == len(self.input_shape) + 1:  # direct encoding: repeat over T
            x = x.unsqueeze(0).expand(self.T, *x.shape)
        else:  # temporal data [B, T, ...]
            x = x.transpose(0, 1)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(0, 2)))


def parse_size(size: str) -> tuple[int, int]:
    return api_parse_size("spikformer", size, "spikformer-4-384")

