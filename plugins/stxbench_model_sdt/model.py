"""The Spike-driven Transformer V1 (Yao et al., NeurIPS 2023), as in its code
(github BICLab/Spike-Driven-Transformer, ``model/spikeformer.py``, ``module/ms_conv.py``,
``module/sps.py``), with neurons from a backend.

What makes it spike-driven, and how this port keeps it:

* **Membrane shortcut.** The residual stream is real-valued (membrane potentials): every
  sub-block starts with a neuron, so each weight matrix reads binary spikes. Attention:
  ``s = SN(x)``; ``q, k, v = SN(BN(W s))``; ``x = x + BN(W_proj (q * SN(sum_N(k * v))))``.
  MLP: ``x = x + BN(W_2 SN(BN(W_1 SN(x))))``.
* **SDSA** (spike-driven self-attention, V1): ``k * v`` and ``q * (...)`` are masks (ANDs of
  spikes); the column sum over tokens is the only arithmetic. The column sum is written as a
  matmul with a row of ones (`ColumnSum`), so op counting sees its additions as ACs, one per
  nonzero entry of ``k * v``; the masks are not synaptic operations and cost nothing. The
  neuron after the column sum fires at 0.5, as ``talking_heads_lif`` in the code.
* **Stem** (``MS_SPS``): conv-BN-neuron at D/8, D/4, D/2 channels, then conv-BN to D channels,
  whose output is both the stream (membrane) and, through a neuron, the input of the
  relative-position conv; their sum enters the blocks. ``pools`` max-pools act on the last
  stages as the code's ``pooling_stat`` ("0011" for CIFAR = ``pools=2``, "1111" = 4); the
  fourth stage pools before its neuron, the others after theirs.
* **Head**: mean over tokens, a neuron, a Linear on the spikes, mean over time.

The code's 1x1 convolutions (q, k, v, proj, fc1, fc2) are `nn.Linear` layers on tokens
``[T, B, N, C]``: the same weights (a 1x1 conv kernel is an out x in matrix), the same
products, and the module every pruner already works on. BatchNorm over tokens normalises each
channel over ``T*B*N`` values, as the code's ``BatchNorm2d`` on ``[T*B, C, H, W]``. Weights are
initialised as the code does (truncated normal, std 0.02, zero biases; the head as torch's
Linear). The code builds modules its forward never runs (``talking_heads`` conv of heads^2
weights per block, ``attn_lif``, ``rpe_lif``, ``DropPath``); they are left out, so parameter
counts are those of the network that runs (the unused conv adds 64 weights per block at 8
heads and changes no published count at its precision).

With ``erode=True`` (the code's ``dvs_mode``, used for CIFAR10-DVS) ``k``, ``v``, ``k * v`` and
``q * SN(...)`` pass through a 3x3 max-pool ("Erode"; on ``k`` and ``v`` over the spatial grid,
on the two products over (token, channel-in-head) of ``[T, B, heads, N, C/heads]``, exactly as
the code applies ``MaxPool3d((1, 3, 3))`` to those tensors).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stxbench.api import MAX_MLP_RATIO, HiddenLayer, MakeNeuron, NeuronSite, NeuronSlot, SpikingModel, UsageError
from stxbench.api import parse_size as api_parse_size

KV_THRESHOLD = 0.5  # the neuron after SDSA's column sum (talking_heads_lif) fires at 0.5
INIT_STD = 0.02  # the code's trunc_normal_(std=0.02) for every convolution


def _bn_tokens(bn: nn.BatchNorm1d, y: Tensor) -> Tensor:
    return bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)


class SpikeLinear(nn.Module):
    """Linear -> BatchNorm -> neuron on tokens ``[T, B, N, C]`` (q, k, v): spikes in, spikes out."""

    def __init__(self, name: str, d_in: int, d_out: int, make_neuron: MakeNeuron, bias: bool):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)
        self.bn = nn.BatchNorm1d(d_out)
        self.neuron = NeuronSlot(NeuronSite(f"{name}.neuron", d_out, -1), make_neuron)

    def forward(self, s: Tensor) -> Tensor:
        return self.neuron(_bn_tokens(self.bn, self.linear(s)))


class MembraneLinear(nn.Module):
    """Neuron -> Linear -> BatchNorm (fc1, fc2): fires on a membrane input, so the matrix
    reads spikes; the output is a membrane increment."""

    def __init__(self, name: str, d_in: int, d_out: int, make_neuron: MakeNeuron):
        super().__init__()
        self.neuron = NeuronSlot(NeuronSite(f"{name}.neuron", d_in, -1), make_neuron)
        self.linear = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)

    def forward(self, x: Tensor) -> Tensor:
        return _bn_tokens(self.bn, self.linear(self.neuron(x)))


class ColumnSum(nn.Module):
    """Sum over tokens of a binary ``[T, B, N, C]`` tensor, as ``x^T @ ones[N, 1]``: one
    accumulate per nonzero entry, counted by the op counter like any matmul on spikes (``x``
    is the left operand, so its counting row reports the firing rate of ``k * v``)."""

    def forward(self, x: Tensor) -> Tensor:
        ones = torch.ones(x.shape[-2], 1, dtype=x.dtype, device=x.device)
        return (x.transpose(-1, -2) @ ones).transpose(-1, -2)  # [T, B, 1, C]


def erode(x: Tensor) -> Tensor:
    """The code's ``Erode``: ``MaxPool3d((1, 3, 3), stride 1, padding 1)`` on a 5-D tensor,
    i.e. a 3x3 max over its last two dims."""
    lead = x.shape[:-2]
    y = F.max_pool2d(x.reshape(-1, 1, *x.shape[-2:]), 3, 1, 1)
    return y.reshape(*lead, *x.shape[-2:])


class SDSA(nn.Module):
    """Spike-driven self-attention (V1) with its shortcut neuron and projection; returns the
    membrane increment (the caller adds the residual)."""

    def __init__(self, name: str, dim: int, heads: int, make_neuron: MakeNeuron,
                 grid: tuple[int, ...] | None):
        super().__init__()
        self.heads, self.grid = heads, grid
        self.neuron = NeuronSlot(NeuronSite(f"{name}.neuron", dim, -1), make_neuron)
        self.q = SpikeLinear(f"{name}.q", dim, dim, make_neuron, bias=False)
        self.k = SpikeLinear(f"{name}.k", dim, dim, make_neuron, bias=False)
        self.v = SpikeLinear(f"{name}.v", dim, dim, make_neuron, bias=False)
        self.kv_sum = ColumnSum()
        self.kv_neuron = NeuronSlot(NeuronSite(f"{name}.kv_neuron", dim, -1, KV_THRESHOLD), make_neuron)
        self.proj = nn.Module()
        self.proj.linear = nn.Linear(dim, dim)
        self.proj.bn = nn.BatchNorm1d(dim)

    def _erode_grid(self, x: Tensor) -> Tensor:  # tokens [T, B, N, C] pooled over the image grid
        T, B, N, C = x.shape
        maps = x.transpose(-1, -2).reshape(T, B, C, *self.grid)
        return erode(maps).reshape(T, B, C, N).transpose(-1, -2)

    def _erode_heads(self, x: Tensor) -> Tensor:  # over (token, channel-in-head) per head
        T, B, N, C = x.shape
        h = x.reshape(T, B, N, self.heads, C // self.heads).transpose(2, 3)
        return erode(h).transpose(2, 3).reshape(T, B, N, C)

    def forward(self, x: Tensor) -> Tensor:
        s = self.neuron(x)
        q, k, v = self.q(s), self.k(s), self.v(s)
        if self.grid is not None:
            k, v = self._erode_grid(k), self._erode_grid(v)
        kv = k * v  # mask
        if self.grid is not None:
            kv = self._erode_heads(kv)
        out = q * self.kv_neuron(self.kv_sum(kv))  # mask, broadcast over tokens
        if self.grid is not None:
            out = self._erode_heads(out)
        return _bn_tokens(self.proj.bn, self.proj.linear(out))


class MLP(nn.Module):
    """Returns the new stream, residual included: ``x + BN(W_2 SN(h))`` with
    ``h = BN(W_1 SN(x))``; when hidden == width the code adds the stream to ``h`` first
    (``h = x + h``) and then uses ``h`` as the residual."""

    def __init__(self, name: str, dim: int, hidden: int, make_neuron: MakeNeuron):
        super().__init__()
        self.fc1 = MembraneLinear(f"{name}.fc1", dim, hidden, make_neuron)
        self.fc2 = MembraneLinear(f"{name}.fc2", hidden, dim, make_neuron)
        self.residual = hidden == dim

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.residual:
            h = x = x + h
        return x + self.fc2(h)


class Block(nn.Module):
    def __init__(self, name: str, dim: int, heads: int, hidden: int, make_neuron: MakeNeuron,
                 grid: tuple[int, ...] | None):
        super().__init__()
        self.attn = SDSA(f"{name}.attn", dim, heads, make_neuron, grid)
        self.mlp = MLP(f"{name}.mlp", dim, hidden, make_neuron)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x + self.attn(x))


class Stem(nn.Module):
    """``MS_SPS``: see the module docstring. Works in 2-D (images) or 1-D (sequences);
    returns membrane tokens ``[T, B, N, D]``."""

    def __init__(self, in_channels: int, dim: int, pools: int, ndim: int, make_neuron: MakeNeuron):
        super().__init__()
        Conv, BN, Pool = (
            (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if ndim == 2
            else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        )
        channel_dim = -1 - ndim
        widths = [in_channels, dim // 8, dim // 4, dim // 2, dim]
        self.convs, self.bns, self.neurons, self.pools = (nn.ModuleList() for _ in range(4))
        for i in range(4):
            self.convs.append(Conv(widths[i], widths[i + 1], 3, 1, 1, bias=False))
            self.bns.append(BN(widths[i + 1]))
            site = NeuronSite(f"stem.neurons.{i}", widths[i + 1], channel_dim)
            self.neurons.append(NeuronSlot(site, make_neuron))
            self.pools.append(Pool(3, 2, 1) if i >= 4 - pools else nn.Identity())
        self.rpe_conv = Conv(dim, dim, 3, 1, 1, bias=False)
        self.rpe_bn = BN(dim)

    @staticmethod
    def _frames(f, x: Tensor) -> Tensor:  # apply a [N, ...] module to [T, B, ...]
        y = f(x.flatten(0, 1))
        return y.reshape(*x.shape[:2], *y.shape[1:])

    def forward(self, x: Tensor) -> Tensor:  # [T, B, C, *spatial]
        for i in range(3):
            x = self.neurons[i](self._frames(lambda z: self.bns[i](self.convs[i](z)), x))
            x = self._frames(self.pools[i], x)
        feat = self._frames(lambda z: self.pools[3](self.bns[3](self.convs[3](z))), x)
        rpe = self._frames(lambda z: self.rpe_bn(self.rpe_conv(z)), self.neurons[3](feat))
        return (feat + rpe).flatten(3).transpose(-1, -2)


def default_pools(input_shape: tuple[int, ...]) -> int:
    """Halve the spatial size until it is at most 8 (images: 32 -> 8x8 tokens as the CIFAR
    model) or 16 (sequences), at most four times."""
    size = max(input_shape[1:])
    target = 8 if len(input_shape) == 3 else 16
    pools = 0
    while size > target and pools < 4:
        size = math.ceil(size / 2)
        pools += 1
    return pools


def pooled(size: int, pools: int) -> int:
    for _ in range(pools):
        size = (size + 2 - 3) // 2 + 1  # MaxPool(3, 2, 1)
    return size


class SpikeDrivenTransformer(SpikingModel):
    def __init__(
        self, *, depth: int, dim: int, input_shape: tuple[int, ...], num_classes: int, T: int,
        make_neuron: MakeNeuron, heads: int = 8, mlp_ratio: float = 4.0, pools: int | None = None,
        erode: bool = False,
    ):
        super().__init__()
        if dim % 8 or heads < 1 or dim % heads:
            raise UsageError(f"sdt width {dim} must be a multiple of 8 and of the head count {heads}")
        if len(input_shape) not in (2, 3):
            raise UsageError(f"sdt takes (C, H, W) images or (C, L) sequences, not shape {input_shape}")
        pools = default_pools(input_shape) if pools is None else pools
        if not isinstance(pools, int) or not 0 <= pools <= 4:
            raise UsageError(f"sdt pools must be an integer in 0..4, got {pools!r}")
        if not 0 < mlp_ratio <= MAX_MLP_RATIO:
            raise UsageError(f"sdt mlp_ratio must be in (0, {MAX_MLP_RATIO}], got {mlp_ratio!r}")
        hidden = int(dim * mlp_ratio)
        if hidden < 1:
            raise UsageError(f"sdt mlp_ratio {mlp_ratio} leaves no hidden units at width {dim}")
        if erode and len(input_shape) != 3:
            raise UsageError("sdt erode (the code's dvs_mode) needs (C, H, W) images")
        grid = tuple(pooled(s, pools) for s in input_shape[1:]) if erode else None
        self.T = T
        self.input_shape = tuple(input_shape)
        self.stem = Stem(input_shape[0], dim, pools, len(input_shape) - 1, make_neuron)
        self.blocks = nn.ModuleList(
            Block(f"blocks.{i}", dim, heads, hidden, make_neuron, grid) for i in range(depth)
        )
        self.head_neuron = NeuronSlot(NeuronSite("head_neuron", dim, -1), make_neuron)
        self.head = nn.Linear(dim, num_classes)
        self._init_like_the_code()

    @torch.no_grad()
    def _init_like_the_code(self) -> None:
        convs_in_the_code = [*self.stem.convs, self.stem.rpe_conv, *self.st_matrices().values()]
        for m in convs_in_the_code:
            nn.init.trunc_normal_(m.weight, std=INIT_STD, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def st_matrix_names(self) -> list[str]:
        names = []
        for i in range(len(self.blocks)):
            names += [f"blocks.{i}.attn.{m}.linear" for m in ("q", "k", "v", "proj")]
            names += [f"blocks.{i}.mlp.{m}.linear" for m in ("fc1", "fc2")]
        return names

    def hidden_layers(self) -> list[HiddenLayer]:
        """fc1's output units: its rows, its BN entries, the neuron that fires on them (fc2's
        input neuron) and fc2's columns. None when hidden == width (the code's MLP then adds
        the stream to the hidden units, which must keep their width)."""
        return [
            HiddenLayer(
                fc1=f"blocks.{i}.mlp.fc1.linear", bn=f"blocks.{i}.mlp.fc1.bn",
                neuron=f"blocks.{i}.mlp.fc2.neuron", fc2=f"blocks.{i}.mlp.fc2.linear",
            )
            for i, block in enumerate(self.blocks)
            if not block.mlp.residual
        ]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == len(self.input_shape) + 1:  # direct encoding: repeat over T
            x = x.unsqueeze(0).expand(self.T, *x.shape)
        else:  # temporal data [B, T, ...]
            x = x.transpose(0, 1)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.head_neuron(x.mean(dim=2))).mean(0)


def parse_size(size: str) -> tuple[int, int]:
    return api_parse_size("sdt", size, "sdt-2-512")
