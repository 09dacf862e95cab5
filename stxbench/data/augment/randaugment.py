"""RandAugment with timm's semantics (``timm.data.auto_augment``, as of timm 0.5-0.6, the
versions Spikformer's and the Spike-driven Transformer's code ran), on image batches.

A config string ``rand-m9-n1-mstd0.4-inc1`` means: magnitude 9 (``m``), one op per image
(``n``), magnitude noise ``N(m, 0.4)`` (``mstd``; above 100: uniform on [0, m]), clipped to
[0, 10] (``mmax`` raises the bound), and with ``inc1`` the op set whose severity increases with
magnitude. For each image and each of its ``n`` layers: an op is drawn uniformly (with
replacement), applied with probability 0.5, with a fresh magnitude and, for signed ops, a sign
drawn with probability 1/2 each. The ops (`pixel_ops`) compute what Pillow computes; their
geometric ones fill with the dataset's mean colour and resample bicubic (as both originals
configure) or bilinear, or pick one of the two at random per op as timm does by default.

Random numbers come from the run's seeded generator, drawn on the CPU for the whole batch at
once (the same values whatever the device), so a seed fixes every augmentation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from stxbench.data.augment import pixel_ops as ops
from stxbench.run.errors import UsageError

LEVEL_DENOM = 10.0
TRANSLATE_PCT = 0.45  # TranslateXRel / YRel: up to 45 % of the image size
TRANSLATE_CONST_FRACTION = 0.45  # TranslateX / Y: int(0.45 * min(H, W)) pixels at m = 10

#: timm's ``_RAND_TRANSFORMS`` and ``_RAND_INCREASING_TRANSFORMS`` (``inc1``)
STANDARD_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                "TranslateXRel", "TranslateYRel")
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                  "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                  "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                  "TranslateXRel", "TranslateYRel")
#: Spikformer's CIFAR code (cifar10/aa_snn.py) cut timm's lists down to these five
SPIKFORMER_OPS = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")

SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel",
          "TranslateYRel", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
          "SharpnessIncreasing"}
ALL_OPS = (*dict.fromkeys((*STANDARD_OPS, *INCREASING_OPS)), "PosterizeOriginal", "TranslateX",
           "TranslateY")
INTERPOLATIONS = {"bilinear": 2, "bicubic": 3}  # Pillow's resample codes


@dataclass(frozen=True)
class RandAugmentConfig:
    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0  # inf: uniform on [0, magnitude]
    magnitude_max: float = LEVEL_DENOM
    increasing: bool = False
    prob: float = 0.5

    @classmethod
    def parse(cls, text: str) -> RandAugmentConfig:
        """timm's ``rand_augment_transform`` config string; a bad one is a `UsageError`."""
        parts = text.split("-")
        if parts[0] != "rand":
            raise UsageError(f"rand_augment '{text}' must start with 'rand', e.g. rand-m9-n1-mstd0.4-inc1")
        values: dict[str, object] = {}
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)?)", part)
            keys = {"m": "magnitude", "n": "num_layers", "mstd": "magnitude_std",
                    "mmax": "magnitude_max", "inc": "increasing"}
            if not match or match.group(1) not in keys:
                raise UsageError(
                    f"rand_augment '{text}': cannot read '{part}'; valid sections: m<magnitude>, "
                    "n<ops per image>, mstd<std>, mmax<bound>, inc<0|1> (timm's 'w' weights are not supported)"
                )
            key, value = keys[match.group(1)], float(match.group(2))
            if key != "magnitude_std" and value != int(value):
                raise UsageError(f"rand_augment '{text}': '{part}' must be a whole number (only mstd takes decimals)")
            if key == "num_layers":
                if value < 1:
                    raise UsageError(f"rand_augment '{text}': n must be >= 1")
                value = int(value)
            if key == "magnitude_std" and value > 100:
                value = math.inf  # timm: uniform sampling
            values[key] = bool(value) if key == "increasing" else value
        return cls(**values)

    def op_names(self) -> tuple[str, ...]:
        return INCREASING_OPS if self.increasing else STANDARD_OPS


def check_ops(names: list[str] | None) -> None:
    if names is None:
        return
    if not names:
        raise UsageError("rand_augment_ops must name at least one op")
    unknown = [n for n in names if n not in ALL_OPS]
    if unknown:
        raise UsageError(f"unknown RandAugment op '{unknown[0]}'; valid: {', '.join(ALL_OPS)}")


def _level_arg(name: str, level: float, negate: bool, size: tuple[int, int]) -> float:
    """timm's ``LEVEL_TO_ARG`` for one clipped magnitude, in Python floats as timm computes it
    (tensor arithmetic may divide through a reciprocal and round differently)."""
    def signed(v: float) -> float:
        return -v if negate else v

    frac = level / LEVEL_DENOM
    if name == "Rotate":
        return signed(frac * 30.0)
    if name in ("ShearX", "ShearY"):
        return signed(frac * 0.3)
    if name in ("TranslateXRel", "TranslateYRel"):
        return signed(frac * TRANSLATE_PCT)
    if name in ("TranslateX", "TranslateY"):
        return signed(frac * float(int(min(size) * TRANSLATE_CONST_FRACTION)))
    if name == "Posterize":
        return int(frac * 4)
    if name == "PosterizeIncreasing":
        return 4 - int(frac * 4)
    if name == "PosterizeOriginal":
        return int(frac * 4) + 4
    if name == "Solarize":
        return int(frac * 256)
    if name == "SolarizeIncreasing":
        return 256 - int(frac * 256)
    if name == "SolarizeAdd":
        return int(frac * 110)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return frac * 1.8 + 0.1
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/SharpnessIncreasing
        return max(0.1, 1.0 + signed(frac * 0.9))
    return level  # AutoContrast, Equalize, Invert take none


def _level_args(name: str, level: Tensor, sign: Tensor, size: tuple[int, int]) -> Tensor:
    args = [_level_arg(name, lv, sg < 0, size) for lv, sg in zip(level.tolist(), sign.tolist())]
    return torch.tensor(args, dtype=torch.float64)


def _affine_matrices(name: str, args: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Per-sample affine matrices (float64 [b, 6]) and which samples change at all."""
    H, W = size
    rows, moved = [], []
    for a in args.tolist():
        if name == "Rotate":
            m = ops.rotation_matrix(a, W, H)
            moved.append(m is not None)
            rows.append(m or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
            continue
        moved.append(True)  # Pillow resamples even at a zero shear or shift (an exact copy)
        if name == "ShearX":
            rows.append((1.0, a, 0.0, 0.0, 1.0, 0.0))
        elif name == "ShearY":
            rows.append((1.0, 0.0, 0.0, a, 1.0, 0.0))
        elif name in ("TranslateXRel", "TranslateX"):
            rows.append((1.0, 0.0, a * W if name.endswith("Rel") else a, 0.0, 1.0, 0.0))
        else:
            rows.append((1.0, 0.0, 0.0, 0.0, 1.0, a * H if name.endswith("Rel") else a))
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(moved)


def apply_op(name: str, x: Tensor, args: Tensor, fill: Tensor, resample: Tensor) -> Tensor:
    """One op on a float batch of pixel values with per-sample arguments (``args [b]``)."""
    if name == "AutoContrast":
        return ops.auto_contrast(x)
    if name == "Equalize":
        return ops.equalize(x)
    if name == "Invert":
        return ops.invert(x)
    if name.startswith("Posterize"):
        return ops.posterize(x, args.to(x.device))
    if name in ("Solarize", "SolarizeIncreasing"):
        return ops.solarize(x, args.to(x.device, x.dtype))
    if name == "SolarizeAdd":
        return ops.solarize_add(x, args.to(x.device, x.dtype))
    enhance = {"Color": ops.color, "Contrast": ops.contrast, "Brightness": ops.brightness,
               "Sharpness": ops.sharpness}
    base = name.removesuffix("Increasing")
    if base in enhance:
        return enhance[base](x, args.to(x.device))
    matrices, moved = _affine_matrices(name, args, tuple(x.shape[-2:]))
    out = ops.affine(x, matrices, fill, resample.to(x.device))
    return torch.where(moved.to(x.device).view(-1, 1, 1, 1), out, x)


class RandAugment:
    """``augment(x, generator)`` for a stored uint8 image batch ``[B, C, H, W]``."""

    def __init__(self, config: RandAugmentConfig, op_names: tuple[str, ...], fill: Tensor,
                 interpolation: str):
        self.config, self.op_names, self.fill = config, op_names, fill
        self.interpolation = interpolation

    def draws(self, batch: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Every random number of one batch, per image and layer (shape ``[batch, n]``)."""
        c, n = self.config, self.config.num_layers
        shape = (batch, n)
        op = torch.randint(len(self.op_names), shape, generator=generator)
        applied = torch.rand(shape, generator=generator, dtype=torch.float64) <= c.prob
        if c.magnitude_std == math.inf:
            level = torch.rand(shape, generator=generator, dtype=torch.float64) * c.magnitude
        elif c.magnitude_std > 0:
            level = c.magnitude + c.magnitude_std * torch.randn(shape, generator=generator, dtype=torch.float64)
        else:
            level = torch.full(shape, float(c.magnitude), dtype=torch.float64)
        level = level.clamp(0.0, c.magnitude_max)
        sign = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64) > 0.5, -1.0, 1.0)
        if self.interpolation == "random":
            resample = torch.where(torch.rand(shape, generator=generator) < 0.5, 2, 3)
        else:
            resample = torch.full(shape, INTERPOLATIONS[self.interpolation])
        return {"op": op, "applied": applied, "level": level, "sign": sign, "resample": resample}

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        d = self.draws(x.shape[0], generator)
        size = tuple(x.shape[-2:])
        out = x.to(torch.float32)
        for layer in range(self.config.num_layers):
            for k, name in enumerate(self.op_names):
                chosen = (d["op"][:, layer] == k) & d["applied"][:, layer]
                if not bool(chosen.any()):
                    continue
                idx = chosen.nonzero().squeeze(1)
                args = _level_args(name, d["level"][idx, layer], d["sign"][idx, layer], size)
                dev_idx = idx.to(x.device)
                out[dev_idx] = apply_op(name, out[dev_idx], args, self.fill, d["resample"][idx, layer])
        return out.to(x.dtype)
