"""Random erasing with timm's semantics (``timm.data.random_erasing.RandomErasing`` as Spikformer's
CIFAR recipe configures it: ``reprob``, ``remode``, ``recount``), on normalised image batches.

Each image is erased with probability ``probability``; then ``count`` boxes (1 when
``max_count`` is 1, else drawn uniformly from 1..max_count) are placed one after another. Per
box, up to 10 attempts: area ``U(0.02, 1/3) * H*W / count``, aspect ratio ``exp(U(log 0.3,
log 1/0.3))``, ``h = round(sqrt(area * ratio))``, ``w = round(sqrt(area / ratio))`` (Python's
round), kept at the first attempt with ``w < W`` and ``h < H``, placed at a uniform top-left
corner. The box takes 0 (``const``: the dataset mean after normalisation), one standard-normal
value per channel (``rand``) or per pixel (``pixel``). Random numbers come from the run's
generator, drawn on the CPU for the whole batch (the same values on any device).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MIN_AREA, MAX_AREA = 0.02, 1 / 3
LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
ATTEMPTS = 10
MODES = ("const", "rand", "pixel")


class RandomErasing:
    def __init__(self, probability: float, mode: str = "const", max_count: int = 1):
        self.probability, self.mode, self.max_count = probability, mode, max_count

    def boxes(self, batch: int, height: int, width: int, generator: torch.Generator) -> list[list[tuple[int, int, int, int]]]:
        """Per image, the boxes ``(top, left, h, w)`` to erase, in order."""
        erase = torch.rand(batch, generator=generator, dtype=torch.float64) < self.probability
        counts = (torch.randint(1, self.max_count + 1, (batch,), generator=generator)
                  if self.max_count > 1 else torch.ones(batch, dtype=torch.int64))
        shape = (batch, self.max_count, ATTEMPTS)
        area_u = torch.rand(shape, generator=generator, dtype=torch.float64).tolist()
        aspect_u = torch.rand(shape, generator=generator, dtype=torch.float64).tolist()
        top_u = torch.rand(shape, generator=generator, dtype=torch.float64).tolist()
        left_u = torch.rand(shape, generator=generator, dtype=torch.float64).tolist()
        area = height * width
        out = []
        for i in range(batch):
            boxes = []
            count = int(counts[i])
            for j in range(count if erase[i] else 0):
                for a in range(ATTEMPTS):
                    target = (MIN_AREA + (MAX_AREA - MIN_AREA) * area_u[i][j][a]) * area / count
                    ratio = math.exp(LOG_ASPECT[0] + (LOG_ASPECT[1] - LOG_ASPECT[0]) * aspect_u[i][j][a])
                    h = int(round(math.sqrt(target * ratio)))
                    w = int(round(math.sqrt(target / ratio)))
                    if w < width and h < height:
                        top = min(int(top_u[i][j][a] * (height - h + 1)), height - h)
                        left = min(int(left_u[i][j][a] * (width - w + 1)), width - w)
                        boxes.append((top, left, h, w))
                        break
            out.append(boxes)
        return out

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Erase boxes in a normalised batch ``[B, C, H, W]`` (returns a new tensor)."""
        B, C, H, W = x.shape
        out = x.clone()
        for i, boxes in enumerate(self.boxes(B, H, W, generator)):
            for top, left, h, w in boxes:
                if self.mode == "pixel":
                    values = torch.randn((C, h, w), generator=generator)
                elif self.mode == "rand":
                    values = torch.randn((C, 1, 1), generator=generator)
                else:
                    values = torch.zeros((C, 1, 1))
                out[i, :, top:top + h, left:left + w] = values.to(x.device, x.dtype)
        return out
