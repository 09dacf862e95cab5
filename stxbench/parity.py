"""Parity: every installed backend against the torch reference, neuron by neuron.

For each neuron the host knows, each backend and each surrogate the backend supports, the same
fixed inputs go through the backend's neuron and the reference's: two sites (tokens with the
threshold 1, feature maps with the attention threshold 0.5), two inputs (float32 random with a
heavy negative tail, and values quantised to quarters, where the charged potential hits the
threshold exactly and often), and two parameter settings (the initial values, which must agree,
and random "trained" values set on both by meaning, so per-channel broadcasting is exercised).

Measured: max |dV| over the charged potential H (``v_seq``; relative where |V| > 1, since the
float32 spacing grows with |V|), the number of differing spikes, and the largest relative
gradient difference ``max|g - g_ref| / max|g_ref|`` for the input and for the learnables
(compared by meaning: decay ``w`` and threshold ``theta``). A backend passes when spikes are
identical, |dV| <= `V_TOLERANCE` * max(1, |V|) and gradients are within `GRAD_TOLERANCE`, and
it meets the contract: learnables registered as parameters with the reference's initial values,
fresh state at every call, binary spikes of the input's shape, and a surrogate it refuses in
``check_neuron`` refused by ``make_neuron`` too (never silently swapped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from stxbench.api import SURROGATE_DEFAULT_ALPHA, Backend, NeuronSite, NeuronSpec, Surrogate
from stxbench.errors import UsageError, one_line
from stxbench.host import PluginHost
from stxbench import lif
from stxbench.lif import MEANINGS

REFERENCE = "torch"
V_TOLERANCE = 1e-6
GRAD_TOLERANCE = 1e-5
TOLERANCES = (
    f"spikes identical; max |dV| / max(1, |V|) <= {V_TOLERANCE:g}; "
    f"max |g - g_ref| / max |g_ref| <= {GRAD_TOLERANCE:g} (input and learnables)"
)

#: (site, input shape [T, B, ...]) pairs every neuron is checked on.
SITES: tuple[tuple[NeuronSite, tuple[int, ...]], ...] = (
    (NeuronSite("tokens", channels=16, channel_dim=-1, v_threshold=1.0), (4, 4, 6, 16)),
    (NeuronSite("maps", channels=3, channel_dim=-3, v_threshold=0.5), (4, 2, 3, 5, 5)),
)
INPUTS = ("random", "quantised")
SETTINGS = ("initial", "trained")


def make_input(kind: str, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Fixed float32 inputs. ``random``: N(0.5, 1.5^2) with every 37th value at -60 (H far below
    threshold, where snntorch's own sigmoid surrogate overflows to NaN); ``quantised``: multiples
    of 1/4, so that with tau = 2 the charged potential is exact and often exactly at threshold."""
    if kind == "random":
        x = torch.randn(shape, generator=generator) * 1.5 + 0.5
        x.view(-1)[::37] = -60.0
        return x
    return torch.round(torch.randn(shape, generator=generator) * 4) / 4 + 0.5


def parameters_by_meaning(module: nn.Module) -> dict[str, nn.Parameter]:
    """The module's learnables keyed by meaning (``decay_w``, ``threshold``); a parameter whose
    meaning is unknown is keyed by its own name, so it shows up as unmapped."""
    custom = getattr(module, "parameters_by_meaning", None)
    if callable(custom):
        return dict(custom())
    return {MEANINGS.get(name.rpartition(".")[2], name): p for name, p in module.named_parameters()}


def relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    scale = reference.abs().max().item()
    diff = (value - reference).abs().max().item()
    return diff / scale if scale > 0 else diff


def worst(values: Iterable[float]) -> float:
    """The largest value, NaN if any is NaN (so a NaN can never pass)."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values, default=0.0)


@dataclass
class Row:
    """One neuron x backend x surrogate, aggregated over sites, inputs and settings."""

    neuron: str
    backend: str
    surrogate: str
    max_dv: float = 0.0
    spikes_differing: int = 0
    spikes_compared: int = 0
    ties: int = 0  # reference H exactly at threshold: where `>=` and `>` disagree
    grad_input: float = 0.0
    grad_params: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        grads = [self.grad_input] + ([self.grad_params] if self.grad_params is not None else [])
        return (
            not self.problems
            and self.spikes_differing == 0
            and self.max_dv <= V_TOLERANCE
            and all(g <= GRAD_TOLERANCE for g in grads)  # False for NaN
        )

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


@dataclass
class Report:
    rows: list[Row]
    notes: list[str]

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]


def _set_trained_values(ref: dict[str, nn.Parameter], cand: dict[str, nn.Parameter],
                        site: NeuronSite, generator: torch.Generator) -> None:
    with torch.no_grad():
        for meaning, p in ref.items():
            if meaning == "decay_w":
                value = torch.randn(p.shape, generator=generator) * 0.5
            else:
                value = site.v_threshold * (0.6 + 0.8 * torch.rand(p.shape, generator=generator))
            p.copy_(value)
            cand[meaning].copy_(value)


def _compare_once(row: Row, reference: Backend, backend: Backend, spec: NeuronSpec,
                  surrogate: Surrogate, site: NeuronSite, shape: tuple[int, ...],
                  kind: str, setting: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # for backends that draw random numbers at construction
    ref = reference.make_neuron(spec, site, surrogate)
    cand = backend.make_neuron(spec, site, surrogate)
    ref_params, cand_params = parameters_by_meaning(ref), parameters_by_meaning(cand)
    for meaning in sorted(set(ref_params) | set(cand_params)):
        if meaning not in cand_params:
            row.problem(f"no learnable parameter for {meaning} (unregistered?)")
        elif meaning not in ref_params:
            row.problem(f"parameter '{meaning}' has no meaning in the spec (valid: {', '.join(ref_params) or 'none'})")
        elif cand_params[meaning].shape != ref_params[meaning].shape:
            row.problem(f"{meaning} has shape {tuple(cand_params[meaning].shape)}, "
                        f"the spec says {tuple(ref_params[meaning].shape)}")
        elif not torch.equal(cand_params[meaning].detach(), ref_params[meaning].detach()):
            row.problem(f"initial {meaning} differs from the spec's")
    if row.problems:
        return
    if setting == "trained":
        _set_trained_values(ref_params, cand_params, site, generator)

    x = make_input(kind, shape, generator)
    weights = torch.randn(shape, generator=generator)  # so every spike's gradient differs
    outputs, grads = [], []
    for module, params in ((ref, ref_params), (cand, cand_params)):
        module.store_v_seq = True
        xin = x.clone().requires_grad_(True)
        spikes = module(xin)
        if spikes.shape != x.shape or spikes.dtype != x.dtype:
            row.problem(f"returned {spikes.dtype} {tuple(spikes.shape)} for input {x.dtype} {tuple(x.shape)}")
            return
        (spikes * weights).sum().backward()
        v_seq = getattr(module, "v_seq", None)
        if not isinstance(v_seq, torch.Tensor) or v_seq.shape != x.shape:
            row.problem("no v_seq of the input's shape with store_v_seq=True")
            return
        outputs.append((spikes.detach(), v_seq.detach()))
        grads.append((xin.grad, {m: p.grad for m, p in params.items()}))

    (s_ref, v_ref), (s_cand, v_cand) = outputs
    with torch.no_grad():
        row.ties += int((v_ref == lif.threshold(ref, spec, site)).sum())
    if not ((s_cand == 0) | (s_cand == 1)).all():
        row.problem("spikes are not all 0 or 1")
    row.spikes_differing += int((s_cand != s_ref).sum())
    row.spikes_compared += s_ref.numel()
    # float32 spacing grows with |V|: far below threshold (V = -30, say) one ulp is 4e-6
    dv = ((v_cand - v_ref).abs() / v_ref.abs().clamp_min(1.0)).max().item()
    row.max_dv = worst([row.max_dv, dv])
    (gx_ref, gp_ref), (gx_cand, gp_cand) = grads
    if gx_cand is None:
        row.problem("no gradient reaches the input")
    else:
        row.grad_input = worst([row.grad_input, relative_difference(gx_cand, gx_ref)])
    for meaning, g_ref in gp_ref.items():
        g_cand = gp_cand[meaning]
        if g_cand is None:
            row.problem(f"no gradient reaches {meaning}")
            continue
        row.grad_params = worst([row.grad_params or 0.0, relative_difference(g_cand, g_ref)])

    with torch.no_grad():  # state must not leak from one batch into the next
        cand(make_input(kind, shape, generator))
        if not torch.equal(cand(x), s_cand):
            row.problem("state leaks between calls (output depends on the previous batch)")


def check(reference: Backend, backend: Backend, spec: NeuronSpec, surrogate: Surrogate, *,
          inputs: Sequence[str] = INPUTS, settings: Sequence[str] = SETTINGS) -> Row:
    """Compare one backend's neuron with the reference's on every site, input and setting."""
    row = Row(spec.name, backend.name, surrogate.name)
    for site_index, (site, shape) in enumerate(SITES):
        for kind in inputs:
            for setting in settings:
                # the seed depends on what is compared, not on which subset was asked for
                seed = 100 * site_index + 10 * INPUTS.index(kind) + SETTINGS.index(setting)
                try:
                    _compare_once(row, reference, backend, spec, surrogate, site, shape, kind, setting, seed)
                except Exception as exc:  # a broken backend is a FAIL row, not a crash
                    row.problem(one_line(exc))
    return row


def _refuses(backend: Backend, spec: NeuronSpec, surrogate: Surrogate) -> str | None:
    try:
        backend.check_neuron(spec, surrogate)
    except UsageError as exc:
        return str(exc)
    return None


def _silently_built(backend: Backend, spec: NeuronSpec, surrogate: Surrogate) -> Row | None:
    """A FAIL row when ``make_neuron`` builds what ``check_neuron`` refuses."""
    row = Row(spec.name, backend.name, surrogate.name)
    try:
        backend.make_neuron(spec, NeuronSite("n", 1, -1), surrogate)
    except UsageError:
        return None
    except Exception as exc:
        row.problem(f"refuses it in check_neuron, but make_neuron raised {one_line(exc)}")
    else:
        row.problem("refuses it in check_neuron, but make_neuron builds it anyway")
    return row


def run(host: PluginHost, neurons: Sequence[str] = (), backends: Sequence[str] = ()) -> Report:
    """Parity of the chosen (default: all) neurons and installed backends with the reference."""
    reference = host.backend(REFERENCE)
    neuron_names = list(neurons) or host.names("neuron")
    backend_names = list(backends) or [n for n in host.names("backend") if n != REFERENCE]
    specs = [host.neuron(n) for n in neuron_names]
    chosen = [host.backend(n) for n in backend_names]
    rows: list[Row] = []
    notes: list[str] = []
    refused: dict[str, list[str]] = {}
    installed = []
    for backend in chosen:
        if backend.library_version() is None:
            notes.append(f"{backend.name}: not installed (pip install 'stxbench[{backend.extra or backend.library}]')")
        else:
            installed.append(backend)
    surrogates = [Surrogate(name) for name in SURROGATE_DEFAULT_ALPHA]
    for spec in specs:
        for backend in installed:
            for surrogate in surrogates:
                if _refuses(reference, spec, surrogate):
                    continue
                reason = _refuses(backend, spec, surrogate)
                if reason is None:
                    rows.append(check(reference, backend, spec, surrogate))
                    continue
                refused.setdefault(backend.name, []).append(f"{spec.name}/{surrogate.name}")
                silent = _silently_built(backend, spec, surrogate)
                if silent is not None:
                    rows.append(silent)
    notes += [f"{name}: refuses {', '.join(combos)} (UsageError, never swapped)" for name, combos in refused.items()]
    for spec in specs:
        if all(_refuses(reference, spec, s) for s in surrogates):
            notes.append(f"neuron {spec.name}: the reference does not implement it; not compared")
    return Report(rows, notes)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.1e}"


def table(report: Report) -> str:
    from tabulate import tabulate

    body = [
        [r.neuron, r.backend, r.surrogate, _number(r.max_dv), f"{r.spikes_differing}/{r.spikes_compared}", r.ties,
         _number(r.grad_input), _number(r.grad_params), "PASS" if r.passed else "FAIL"]
        for r in report.rows
    ]
    headers = ["neuron", "backend", "surrogate", "max |dV|", "spikes differing", "ties",
               "grad input (rel)", "grad params (rel)", "result"]
    return tabulate(body, headers=headers, disable_numparse=True)
