"""RandAugment and RandomErasing on tensors (`stxbench.data.augment`): every op equals Pillow's pixel
for pixel, a whole RandAugment batch equals timm's algorithm applied with the same draws, the
draws and erased boxes have timm's statistics, seeds fix everything, and the protocol fields are
checked, hash-neutral at their defaults and refused where the data do not fit."""

from __future__ import annotations

import math
import random

import pytest
import torch

from stxbench.data.augment import mean_pixel, stage_augmentation
from stxbench.data.augment.erasing import RandomErasing
from stxbench.data.augment.randaugment import (
    ALL_OPS, INCREASING_OPS, SIGNED, RandAugment, RandAugmentConfig, apply_op,
)
from stxbench.run.errors import UsageError
from stxbench.run.protocol import Protocol, load_protocol

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

BILINEAR, BICUBIC = Image.Resampling.BILINEAR, Image.Resampling.BICUBIC
FILL = (125, 123, 114)  # CIFAR-10's mean as timm's img_mean


def images(n: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Structured 8-bit test images: smooth blobs, edges and noise, plus one flat image."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, channels, 4, 4, generator=g) * 255
    smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.randn(n, channels, size, size, generator=g) * 20
    x = (smooth + noise).clamp(0, 255).round().to(torch.uint8)
    x[0] = 77  # a flat image: autocontrast and equalize leave it alone
    return x


def to_pil(x: torch.Tensor) -> Image.Image:
    arr = x.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0], "L") if x.shape[0] == 1 else Image.fromarray(arr, "RGB")


def from_pil(img: Image.Image) -> torch.Tensor:
    t = torch.from_numpy(__import__("numpy").asarray(img).copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


def pil_op(name: str, img: Image.Image, arg, fill, resample):
    """timm 0.6's op functions (timm/data/auto_augment.py), called as its AugmentOp calls them."""
    kw = {"fillcolor": fill, "resample": resample}
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **kw)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **kw)
    if name == "TranslateXRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, arg * img.size[0], 0, 1, 0), **kw)
    if name == "TranslateYRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg * img.size[1]), **kw)
    if name == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, arg, 0, 1, 0), **kw)
    if name == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg), **kw)
    if name == "Rotate":
        return img.rotate(arg, **kw)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name in ("Solarize", "SolarizeIncreasing"):
        return ImageOps.solarize(img, arg)
    if name == "SolarizeAdd":
        lut = [min(255, i + arg) if i < 128 else i for i in range(256)]
        return img.point(lut * len(img.getbands()))
    if name.startswith("Posterize"):
        if arg == 0:  # Pillow < 10 computed the 0-bit mask (black); Pillow 12+ refuses bits=0
            return img.point([i & ~255 for i in range(256)] * len(img.getbands()))
        return img if arg >= 8 else ImageOps.posterize(img, arg)
    enhance = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
               "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}
    return enhance[name.removesuffix("Increasing")](img).enhance(arg)


def timm_arg(name: str, level: float, negate: bool, size: int):
    """timm's LEVEL_TO_ARG, literally (Python floats)."""
    def neg(v):
        return -v if negate else v
    table = {
        "Rotate": lambda: neg((level / 10.0) * 30.0),
        "ShearX": lambda: neg((level / 10.0) * 0.3), "ShearY": lambda: neg((level / 10.0) * 0.3),
        "TranslateXRel": lambda: neg((level / 10.0) * 0.45), "TranslateYRel": lambda: neg((level / 10.0) * 0.45),
        "TranslateX": lambda: neg((level / 10.0) * float(int(size * 0.45))),
        "TranslateY": lambda: neg((level / 10.0) * float(int(size * 0.45))),
        "Posterize": lambda: int((level / 10.0) * 4),
        "PosterizeIncreasing": lambda: 4 - int((level / 10.0) * 4),
        "PosterizeOriginal": lambda: int((level / 10.0) * 4) + 4,
        "Solarize": lambda: int((level / 10.0) * 256),
        "SolarizeIncreasing": lambda: 256 - int((level / 10.0) * 256),
        "SolarizeAdd": lambda: int((level / 10.0) * 110),
    }
    if name in table:
        return table[name]()
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (level / 10.0) * 1.8 + 0.1
    if name.endswith("Increasing"):
        return max(0.1, 1.0 + neg((level / 10.0) * 0.9))
    return None


ARGS = {
    "ShearX": [-0.3, -0.117, 0.0, 0.05, 0.29], "ShearY": [-0.29, 0.0, 0.123, 0.3],
    "TranslateXRel": [-0.45, -0.1, 0.0, 0.2037, 0.44], "TranslateYRel": [-0.4, 0.013, 0.45],
    "TranslateX": [-14.0, -3.3, 0.0, 6.0], "TranslateY": [-7.25, 12.6],
    "Rotate": [-30.0, -13.7, -0.0, 0.0, 0.0001, 7.3, 29.9, 27.0],
    "Posterize": [0, 1, 2, 4], "PosterizeIncreasing": [0, 1, 3, 4], "PosterizeOriginal": [4, 6, 8],
    "Solarize": [0, 26, 128, 256], "SolarizeIncreasing": [0, 25, 230, 256], "SolarizeAdd": [0, 47, 110],
}
FACTORS = [0.1, 0.37, 0.5, 0.999, 1.0, 1.3, 1.9]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", ALL_OPS)
def test_every_op_equals_pillow(name, channels):
    x = images(6, channels)
    fill = FILL if channels == 3 else 125
    fill_t = torch.tensor(FILL[:channels], dtype=torch.float32)
    args = ARGS.get(name, FACTORS if "Solar" not in name and "Poster" not in name else [0])
    resamples = (BICUBIC, BILINEAR) if name in SIGNED and not name.endswith("Increasing") else (BICUBIC,)
    for resample in resamples:
        for arg in args:
            if name in ("AutoContrast", "Equalize", "Invert") and arg != args[0]:
                continue
            got = apply_op(name, x.float(), torch.full((len(x),), float(arg), dtype=torch.float64),
                           fill_t, torch.full((len(x),), int(resample)))
            for i in range(len(x)):
                want = from_pil(pil_op(name, to_pil(x[i]), arg, fill, resample))
                assert torch.equal(got[i].to(torch.uint8), want), (name, arg, resample, i)


def _draws_of(ra: RandAugment, batch: int, seed: int):
    return ra.draws(batch, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config, ops", [
    ("rand-m9-n1-mstd0.4-inc1", None),
    ("rand-m9-n2-mstd0.4-inc1", ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")),
    ("rand-m7-n3-mstd101", None),  # uniform magnitudes, the standard set
])
def test_a_batch_is_timm_randaugment_with_the_same_draws(config, ops):
    """Run the batch, then replay each image's draws through timm's algorithm on Pillow."""
    cfg = RandAugmentConfig.parse(config)
    names = ops or cfg.op_names()
    ra = RandAugment(cfg, names, torch.tensor(FILL, dtype=torch.float32), "random")
    x = images(48, 3, seed=1)
    out = ra(x, torch.Generator().manual_seed(7))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    d = _draws_of(ra, len(x), 7)
    changed = 0
    for i in range(len(x)):
        img = to_pil(x[i])
        for layer in range(cfg.num_layers):
            if not d["applied"][i, layer]:  # timm: random() > prob skips the op
                continue
            name = names[int(d["op"][i, layer])]
            level = float(d["level"][i, layer])
            arg = timm_arg(name, level, bool(d["sign"][i, layer] < 0), 32)
            img = pil_op(name, img, arg, FILL, int(d["resample"][i, layer]))
        want = from_pil(img)
        assert torch.equal(out[i], want), i
        changed += not torch.equal(want, x[i])
    assert changed > len(x) // 3


def test_draws_have_timms_statistics():
    cfg = RandAugmentConfig.parse("rand-m9-n1-mstd0.4-inc1")
    assert (cfg.magnitude, cfg.num_layers, cfg.magnitude_std, cfg.increasing) == (9, 1, 0.4, True)
    assert len(cfg.op_names()) == 15 and cfg.op_names() == INCREASING_OPS
    n = 30_000
    d = _draws_of(RandAugment(cfg, cfg.op_names(), torch.zeros(3), "bicubic"), n, 0)
    counts = torch.bincount(d["op"].flatten(), minlength=15).double()
    sigma = math.sqrt(n / 15 * (14 / 15))
    assert ((counts - n / 15).abs() < 5 * sigma).all()  # uniform over the 15 ops
    applied = d["applied"].double().mean().item()
    assert abs(applied - 0.5) < 5 * math.sqrt(0.25 / n)
    level = d["level"].flatten()
    assert abs(level.mean().item() - 9.0) < 5 * 0.4 / math.sqrt(n)  # N(9, 0.4), clipped at 10
    assert abs(level.std().item() - 0.4) < 0.02
    assert level.max() <= 10.0 and level.min() >= 0.0
    assert ((level > 9.4) & (level < 9.8)).double().mean().item() == pytest.approx(0.1359, abs=0.01)
    assert abs((d["sign"] < 0).double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / n)
    assert (d["resample"] == 3).all()
    uniform = RandAugment(RandAugmentConfig.parse("rand-m9-mstd101"), ("Rotate",), torch.zeros(3), "random")
    u = _draws_of(uniform, n, 1)
    assert abs(u["level"].mean().item() - 4.5) < 0.1 and u["level"].max() <= 9.0
    assert abs((u["resample"] == 2).double().mean().item() - 0.5) < 0.02


def test_seeds_fix_randaugment_and_probability_zero_is_identity():
    cfg = RandAugmentConfig.parse("rand-m9-n1-mstd0.4-inc1")
    ra = RandAugment(cfg, cfg.op_names(), torch.tensor(FILL, dtype=torch.float32), "bicubic")
    x = images(32, 3, seed=2)
    a = ra(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, ra(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, ra(x, torch.Generator().manual_seed(4)))
    never = RandAugment(RandAugmentConfig(magnitude=9, num_layers=2, prob=0.0), cfg.op_names(),
                        torch.zeros(3), "bicubic")
    assert torch.equal(never(x, torch.Generator().manual_seed(3)), x)


def test_config_strings_are_checked():
    with pytest.raises(UsageError, match="must start with 'rand'"):
        RandAugmentConfig.parse("original-mstd0.5")
    for bad in ("rand-m9-w0", "rand-q3", "rand-m9.5", "rand-n0"):
        with pytest.raises(UsageError, match="rand_augment"):
            RandAugmentConfig.parse(bad)
    assert RandAugmentConfig.parse("rand").num_layers == 2  # timm's defaults: m10, n2


# -- RandomErasing --------------------------------------------------------------------------


def timm_erase_boxes(rng: random.Random, probability, H, W, max_count=1):
    """timm.data.random_erasing.RandomErasing._erase's box choice, literally."""
    if rng.random() > probability:
        return []
    area = H * W
    count = 1 if max_count == 1 else rng.randint(1, max_count)
    boxes = []
    for _ in range(count):
        for _attempt in range(10):
            target_area = rng.uniform(0.02, 1 / 3) * area / count
            aspect_ratio = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < W and h < H:
                boxes.append((rng.randint(0, H - h), rng.randint(0, W - w), h, w))
                break
    return boxes


@pytest.mark.parametrize("H, W, count", [(32, 32, 1), (28, 28, 1), (32, 32, 3)])
def test_erased_boxes_have_timms_distribution(H, W, count):
    n = 6000
    ours = RandomErasing(0.25, "const", count).boxes(n, H, W, torch.Generator().manual_seed(0))
    rng = random.Random(0)
    theirs = [timm_erase_boxes(rng, 0.25, H, W, count) for _ in range(n)]

    def stats(all_boxes):
        erased = [b for b in all_boxes if b]
        boxes = [box for b in erased for box in b]
        areas = torch.tensor([sum(h * w for _, _, h, w in b) / (H * W) for b in erased])
        tops = torch.tensor([t / (H - h) if H > h else 0.5 for t, _, h, _ in boxes])
        aspect = torch.tensor([math.log(h / w) if w and h else 0.0 for _, _, h, w in boxes])
        per_image = torch.tensor([len(b) for b in erased], dtype=torch.float64)
        return len(erased) / len(all_boxes), areas.mean(), areas.std(), tops.mean(), aspect.mean(), aspect.std(), per_image.mean()

    a, b = stats(ours), stats(theirs)
    assert a[0] == pytest.approx(0.25, abs=5 * math.sqrt(0.25 * 0.75 / n))
    assert b[0] == pytest.approx(0.25, abs=5 * math.sqrt(0.25 * 0.75 / n))
    assert a[1] == pytest.approx(float(b[1]), abs=0.01)  # mean erased fraction of the image
    assert a[2] == pytest.approx(float(b[2]), abs=0.01)
    assert a[3] == pytest.approx(0.5, abs=0.03) and a[4] == pytest.approx(0.0, abs=0.06)
    assert a[5] == pytest.approx(float(b[5]), abs=0.04)
    assert a[6] == pytest.approx(float(b[6]), abs=0.1)
    for boxes in ours:
        for t, left, h, w in boxes:
            assert 0 <= t <= H - h and 0 <= left <= W - w and 0 < h < H and 0 < w < W


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_erased_values_and_identity_at_probability_zero(mode):
    x = torch.full((400, 3, 32, 32), 7.0)
    out = RandomErasing(0.5, mode).__call__(x, torch.Generator().manual_seed(1))
    erased = out != 7.0
    assert erased.any(dim=(1, 2, 3)).double().mean().item() == pytest.approx(0.5, abs=0.1)
    values = out[erased]
    if mode == "const":
        assert (values == 0).all()
    else:
        assert abs(values.mean().item()) < 0.1 and values.std().item() == pytest.approx(1.0, abs=0.1)
    if mode == "rand":  # one value per (image, channel) box
        for i in torch.nonzero(erased.any(dim=(1, 2, 3))).flatten()[:20]:
            for c in range(3):
                assert out[i, c][erased[i, c]].unique().numel() == 1
    assert torch.equal(x, torch.full((400, 3, 32, 32), 7.0))  # the input is left alone
    assert torch.equal(RandomErasing(0.0, mode)(x, torch.Generator().manual_seed(1)), x)
    same = RandomErasing(0.5, mode)(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, same)


# -- protocol fields and fit to the data ----------------------------------------------------


def test_fields_are_hash_neutral_at_their_defaults():
    base = load_protocol("digits")
    raw = base.model_dump(mode="json")
    for stage in ("train", "finetune"):
        raw[stage].update(rand_augment=None, rand_augment_ops=None, rand_augment_interpolation="bicubic",
                          random_erasing=0.0, random_erasing_mode="const", random_erasing_count=1)
    assert Protocol.model_validate(raw).sha256() == base.sha256()
    unpinned = Protocol.model_validate({**base.model_dump(mode="json"), "cpu_pin": None})
    assert unpinned.sha256().startswith("bb645ec4fb298717")  # digits' hash before the CPU pin
    raw["train"]["random_erasing"] = 0.25
    assert Protocol.model_validate(raw).sha256() != base.sha256()


@pytest.mark.parametrize("key, value, match", [
    ("train.rand_augment", "rand-q9", "cannot read 'q9'"),
    ("train.rand_augment_ops", '["Rotate", "Spin"]', "unknown RandAugment op 'Spin'"),
    ("finetune.random_erasing", "1.5", "less than or equal to 1"),
    ("train.random_erasing_mode", "blue", "const"),
    ("train.rand_augment", "rand-m9", "needs a dataset of 8-bit images"),  # digits are floats
    ("train.rand_augment_interpolation", "bilinear", "rand_augment_interpolation is set but rand_augment is not"),
    ("finetune.random_erasing_count", "3", "random_erasing_count is set but random_erasing is 0"),
    ("train.random_erasing_count", "100", "less than or equal to 16"),
    ("train.random_erasing", "0.25", None),  # digits are [1, 8, 8] images: allowed
])
def test_bad_augmentation_settings_are_one_line_errors(cli, tmp_path, key, value, match):
    out = tmp_path / "run"
    args = ["run", "--set", f"{key}={value}", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "-q",
            "--set", "train.epochs=0", "--set", "finetune.epochs=0", "--no-counts"]
    result = cli(*args)
    if match is None:
        assert result.code == 0, result.stderr
        return
    assert result.code == 2, result.stderr
    assert match in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (out / "result.json").exists()


def test_mean_pixel_inverts_the_datasets_normalisation():
    from stxbench.data.contract import normalizer

    class Splits:
        prepare = staticmethod(normalizer((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))

    assert mean_pixel(Splits, 3).tolist() == list(FILL)  # timm: round(255 * mean)
    Splits.prepare = None
    assert mean_pixel(Splits, 1).tolist() == [128.0]


def test_a_stage_with_both_runs_on_cifar_batches(tmp_path):
    from test_datasets_idx_cifar import fake_cifar10

    from stxbench_dataset_cifar import Cifar, CIFAR10

    fake_cifar10(tmp_path, n=8)
    splits = Cifar("cifar10", "", CIFAR10, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)).load(str(tmp_path))
    stage = load_protocol("cifar10-spikformer-4-384").train
    extra = stage_augmentation(stage, splits, "train")
    assert extra.raw is not None and extra.erase is not None
    x = splits.train.tensors[0][:16]
    g = torch.Generator().manual_seed(0)
    y = extra.erase(splits.prepare(extra.raw(x, g)), g)
    assert y.shape == x.shape and y.dtype == torch.float32
