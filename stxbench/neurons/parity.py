"""Parity: every native implementation of every neuron family against the family's reference.

For each neuron the host knows, each installed backend that implements the neuron's family
natively (`Backend.families`) and each surrogate the backend supports, the same fixed inputs go
through the backend's neuron and the family's reference (`NeuronFamily.Reference`, plain torch):
two sites (tokens with the threshold 1, feature maps with the attention threshold 0.5), two
inputs (float32 random with a heavy negative tail, and values quantised to quarters, where the
charged potential hits the threshold exactly and often), and two parameter settings (the initial
values, which must agree, and random "trained" values set on both by meaning, so per-channel
broadcasting is exercised).

Measured: max |dV| over the charged potential H (``v_seq``; relative where |V| > 1, since the
float32 spacing grows with |V|), the number of differing spikes, and the largest relative
gradient difference ``max|g - g_ref| / max|g_ref|`` for the input and for the learnables
(compared by meaning: ``NeuronFamily.meanings``). An implementation passes when spikes are
identical, |dV| <= `V_TOLERANCE` * max(1, |V|) and gradients are within `GRAD_TOLERANCE`, and
both it and the reference meet the contract: learnables registered as parameters with the
reference's initial values, fresh state at every call, binary spikes of the input's shape,
``v_seq`` kept, and a surrogate it refuses in ``check_neuron`` refused by ``make_neuron`` too
(never silently swapped).

A family that no chosen backend implements natively (its reference is what runs it everywhere)
is checked against the contract alone: a second instance of its reference stands in for the
implementation under test (backend `REFERENCE_ROW`), which also catches a reference whose output
is not a function of its input and parameters. Such families are named in the report's notes.

The drop-in rule (`drop_in`): a neuron replaces the protocol's base neuron in a trained model, so
at its initial parameters it must fire exactly the base neuron's spikes. Each compared neuron's
family reference, freshly built, and the base neuron's (`DROP_IN_BASE`) get the same fixed
inputs at both sites; any differing spike breaks the rule and fails parity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from stxbench.neurons.contract import Backend, NeuronSpec

from stxbench.neurons.site import SURROGATE_DEFAULT_ALPHA, NeuronSite, Surrogate
from stxbench.neurons.families import NeuronFamily
from stxbench.run.errors import UsageError, one_line
from stxbench.host.plugin_host import PluginHost

#: The backend column of rows that check a family's reference against the contract alone.
REFERENCE_ROW = "(reference)"
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
#: the base neuron the drop-in rule compares with: every built-in protocol's ``model.base_neuron``
DROP_IN_BASE = "lif"


def make_input(kind: str, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Fixed float32 inputs. ``random``: N(0.5, 1.5^2) with every 37th value at -60 (H far below
    threshold, where snntorch's own sigmoid surrogate overflows to NaN); ``quantised``: multiples
    of 1/4, so that with tau = 2 the charged potential is exact and often exactly at threshold."""
    if kind == "random":
        x = torch.randn(shape, generator=generator) * 1.5 + 0.5
        x.view(-1)[::37] = -60.0
        return x
    return torch.round(torch.randn(shape, generator=generator) * 4) / 4 + 0.5


def parameters_by_meaning(module: nn.Module, meanings: dict[str, str]) -> dict[str, nn.Parameter]:
    """The module's learnables keyed by meaning (``meanings`` maps a parameter name to it; an
    unlisted name stands for itself); a module that stores its learnables under other names
    provides ``parameters_by_meaning()`` itself."""
    custom = getattr(module, "parameters_by_meaning", None)
    if callable(custom):
        return dict(custom())
    return {meanings.get(name.rpartition(".")[2], name.rpartition(".")[2]): p
            for name, p in module.named_parameters()}


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
    """One neuron x implementation x surrogate, aggregated over sites, inputs and settings."""

    neuron: str
    backend: str
    surrogate: str
    max_dv: float = 0.0
    spikes_differing: int = 0
    spikes_compared: int = 0
    ties: int | None = 0  # reference H exactly at threshold (where `>=` and `>` disagree); None: unknown
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
class DropIn:
    """Whether a neuron, at its initial parameters, fires the base neuron's spikes."""

    neuron: str
    base: str
    spikes_differing: int = 0
    spikes_compared: int = 0

    @property
    def holds(self) -> bool:
        return self.spikes_compared > 0 and self.spikes_differing == 0

    def line(self) -> str:
        verdict = "holds" if self.holds else "BROKEN"
        return (f"drop-in for {self.base}: {self.neuron} {verdict} ({self.spikes_differing} of "
                f"{self.spikes_compared} spikes differ at initialisation)")


@dataclass
class Report:
    rows: list[Row]
    notes: list[str]
    #: family name -> where its reference comes from, for every family in the report
    references: dict[str, str] = field(default_factory=dict)
    #: the drop-in rule, per compared neuron other than the base
    drop_ins: list[DropIn] = field(default_factory=list)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    @property
    def not_drop_in(self) -> list[DropIn]:
        return [d for d in self.drop_ins if not d.holds]


@dataclass(frozen=True)
class FamilyReference:
    """A family's reference in the place of an implementation under test (contract-only rows)."""

    family: NeuronFamily
    name: str = REFERENCE_ROW

    def make_neuron(self, spec: NeuronSpec, site: NeuronSite, surrogate: Surrogate) -> nn.Module:
        return self.family.Reference(spec, site, surrogate)


class _ReferenceBroken(Exception):
    """The family's reference itself failed (reported as such, not blamed on the backend)."""


def _reference_call(what, *args):
    try:
        return what(*args)
    except Exception as exc:
        raise _ReferenceBroken(f"reference: {one_line(exc)}") from None


def _run_stored(row: Row, module: nn.Module, x: torch.Tensor, weights: torch.Tensor,
                params: dict[str, nn.Parameter], label: str):
    """One forward and backward with ``store_v_seq``; (spikes, v_seq, input grad, param grads)
    or None after recording what breaks the contract."""
    module.store_v_seq = True
    xin = x.clone().requires_grad_(True)
    spikes = module(xin)
    if not isinstance(spikes, torch.Tensor) or spikes.shape != x.shape or spikes.dtype != x.dtype:
        got = f"{spikes.dtype} {tuple(spikes.shape)}" if isinstance(spikes, torch.Tensor) else type(spikes).__name__
        row.problem(f"{label}returned {got} for input {x.dtype} {tuple(x.shape)}")
        return None
    if spikes.requires_grad:
        (spikes * weights).sum().backward()
    v_seq = getattr(module, "v_seq", None)
    if not isinstance(v_seq, torch.Tensor) or v_seq.shape != x.shape:
        row.problem(f"{label}no v_seq of the input's shape with store_v_seq=True")
        return None
    if not ((spikes == 0) | (spikes == 1)).all():
        row.problem(f"{label}spikes are not all 0 or 1")
    return spikes.detach(), v_seq.detach(), xin.grad, {m: p.grad for m, p in params.items()}


def _compare_once(row: Row, family: NeuronFamily, backend: Backend, spec: NeuronSpec,
                  surrogate: Surrogate, site: NeuronSite, shape: tuple[int, ...],
                  kind: str, setting: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # for backends that draw random numbers at construction
    ref = _reference_call(family.Reference, spec, site, surrogate)
    cand = backend.make_neuron(spec, site, surrogate)
    ref_params = parameters_by_meaning(ref, family.meanings)
    cand_params = parameters_by_meaning(cand, family.meanings)
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
        with torch.no_grad():
            for meaning, p in ref_params.items():
                value = family.parity_value(meaning, p.detach().clone(), site, generator)
                p.copy_(value)
                cand_params[meaning].copy_(value)

    x = make_input(kind, shape, generator)
    weights = torch.randn(shape, generator=generator)  # so every spike's gradient differs
    ref_out = _reference_call(_run_stored, row, ref, x, weights, ref_params, "reference: ")
    cand_out = _run_stored(row, cand, x, weights, cand_params, "")
    if ref_out is None or cand_out is None:
        return
    (s_ref, v_ref, gx_ref, gp_ref), (s_cand, v_cand, gx_cand, gp_cand) = ref_out, cand_out
    ties = family.ties(ref, spec, site)
    row.ties = None if ties is None or row.ties is None else row.ties + ties
    row.spikes_differing += int((s_cand != s_ref).sum())
    row.spikes_compared += s_ref.numel()
    # float32 spacing grows with |V|: far below threshold (V = -30, say) one ulp is 4e-6
    dv = ((v_cand - v_ref).abs() / v_ref.abs().clamp_min(1.0)).max().item()
    row.max_dv = worst([row.max_dv, dv])
    if gx_ref is None:
        row.problem("reference: no gradient reaches the input")
    elif gx_cand is None:
        row.problem("no gradient reaches the input")
    else:
        row.grad_input = worst([row.grad_input, relative_difference(gx_cand, gx_ref)])
    for meaning, g_ref in gp_ref.items():
        g_cand = gp_cand[meaning]
        if g_ref is None:
            row.problem(f"reference: no gradient reaches {meaning}")
        elif g_cand is None:
            row.problem(f"no gradient reaches {meaning}")
        else:
            row.grad_params = worst([row.grad_params or 0.0, relative_difference(g_cand, g_ref)])

    with torch.no_grad():  # state must not leak from one batch into the next
        for module, expected, label in ((cand, s_cand, ""), (ref, s_ref, "reference: ")):
            module(make_input(kind, shape, generator))
            if not torch.equal(module(x), expected):
                row.problem(f"{label}state leaks between calls (output depends on the previous batch)")


def check(family: NeuronFamily, backend: Backend, spec: NeuronSpec, surrogate: Surrogate, *,
          inputs: Sequence[str] = INPUTS, settings: Sequence[str] = SETTINGS) -> Row:
    """Compare one implementation of ``spec`` (``backend``'s, or `FamilyReference` for the
    contract alone) with its family's reference on every site, input and setting."""
    row = Row(spec.name, backend.name, surrogate.name)
    for site_index, (site, shape) in enumerate(SITES):
        for kind in inputs:
            for setting in settings:
                # the seed depends on what is compared, not on which subset was asked for
                seed = 100 * site_index + 10 * INPUTS.index(kind) + SETTINGS.index(setting)
                try:
                    _compare_once(row, family, backend, spec, surrogate, site, shape, kind, setting, seed)
                except _ReferenceBroken as exc:
                    row.problem(str(exc))
                except Exception as exc:  # a broken implementation is a FAIL row, not a crash
                    row.problem(one_line(exc))
    return row


def drop_in(family: NeuronFamily, spec: NeuronSpec, base_family: NeuronFamily, base: NeuronSpec) -> DropIn:
    """The drop-in rule for ``spec``: its family's reference and the base neuron's, both fresh
    with their initial parameters, on every site and input parity uses; spikes must be equal.
    (Potentials need not be: the rest of the model sees only spikes.) An exception from either
    reference propagates."""
    result = DropIn(spec.name, base.name)
    surrogate = Surrogate()  # forward only: the surrogate plays no part
    for site_index, (site, shape) in enumerate(SITES):
        for kind in INPUTS:
            generator = torch.Generator().manual_seed(100 * site_index + 10 * INPUTS.index(kind))
            torch.manual_seed(0)  # for references that draw random numbers at construction
            x = make_input(kind, shape, generator)
            with torch.no_grad():
                spikes = family.Reference(spec, site, surrogate)(x)
                expected = base_family.Reference(base, site, surrogate)(x)
            result.spikes_differing += int((spikes != expected).sum())
            result.spikes_compared += expected.numel()
    return result


def _drop_ins(host: PluginHost, specs: Sequence[NeuronSpec], notes: list[str]) -> list[DropIn]:
    """The drop-in rule for every compared neuron but the base; what cannot be checked is a note."""
    try:
        base = host.neuron(DROP_IN_BASE)
        base_family = host.neuron_family(base.family)
    except UsageError as exc:
        notes.append(f"drop-in rule not checked: {exc}")
        return []
    results = []
    for spec in specs:
        family = host.neuron_family(spec.family)
        if spec.name == base.name or family.Reference is None or base_family.Reference is None:
            continue  # a family without a reference is named in the notes already
        try:
            results.append(drop_in(family, spec, base_family, base))
        except Exception as exc:  # a broken reference is a FAIL row already
            notes.append(f"drop-in rule for {spec.name} not checked: {one_line(exc)}")
    return results


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


def _specs(host: PluginHost, names: Sequence[str], notes: list[str]) -> list[NeuronSpec]:
    """The neurons asked for (an unusable one is a `UsageError`), or every usable neuron (an
    unusable one is a note)."""
    if names:
        return [host.neuron(n) for n in names]
    specs = []
    for name in host.names("neuron"):
        try:
            specs.append(host.neuron(name))
        except UsageError as exc:
            notes.append(f"{exc}; not compared")
    return specs


def run(host: PluginHost, neurons: Sequence[str] = (), backends: Sequence[str] = ()) -> Report:
    """Parity of the chosen (default: all) neurons on the chosen (default: all installed)
    backends that implement their families natively, each with its family's reference."""
    notes: list[str] = []
    specs = []
    for spec in _specs(host, neurons, notes):
        if host.neuron_family(spec.family).spiking:
            specs.append(spec)
        else:  # nothing of a spike's contract to hold it to (the ANN twin's activation)
            notes.append(f"{spec.name}: family {spec.family} does not spike; parity compares spiking neurons only")
    chosen = [host.backend(n) for n in (list(backends) or host.names("backend"))]
    every = [host.backend(n) for n in host.names("backend")]
    rows: list[Row] = []
    refused: dict[str, list[str]] = {}
    installed = []
    for backend in chosen:
        if backend.library_version() is None:
            notes.append(f"{backend.name}: not installed (pip install 'stxbench[{backend.extra or backend.library}]')")
        else:
            installed.append(backend)
    surrogates = [Surrogate(name) for name in SURROGATE_DEFAULT_ALPHA]
    references: dict[str, str] = {}
    family_notes: dict[str, str] = {}
    for spec in specs:
        family = host.neuron_family(spec.family)
        comp = host.get("neuron family", spec.family)
        natives = [b for b in installed if spec.family in b.families]
        if family.Reference is None:
            family_notes[spec.family] = (
                f"family {spec.family}: no reference implementation; its native implementations "
                f"({', '.join(b.name for b in natives) or 'none'}) are not compared")
            continue
        references[spec.family] = f"{family.Reference.__module__}.{family.Reference.__qualname__} (plugin '{comp.plugin}')"
        if not natives:
            anywhere = [b.name for b in every if spec.family in b.families and b.library_version()]
            family_notes[spec.family] = (
                f"family {spec.family}: "
                + ("its reference is its only implementation (no installed backend implements it "
                   "natively; every backend runs it through the reference)"
                   if not anywhere else f"no chosen backend implements it natively ({', '.join(anywhere)} do)")
                + f"; the reference is checked against the neuron contract alone (rows {REFERENCE_ROW})")
            rows += [check(family, FamilyReference(family), spec, s) for s in surrogates]
            continue
        for backend in natives:
            for surrogate in surrogates:
                reason = _refuses(backend, spec, surrogate)
                if reason is None:
                    rows.append(check(family, backend, spec, surrogate))
                    continue
                refused.setdefault(backend.name, []).append(f"{spec.name}/{surrogate.name}")
                silent = _silently_built(backend, spec, surrogate)
                if silent is not None:
                    rows.append(silent)
    notes += [f"{name}: refuses {', '.join(combos)} (UsageError, never swapped)" for name, combos in refused.items()]
    notes += list(family_notes.values())
    drop_ins = _drop_ins(host, specs, notes)
    return Report(rows, notes, references, drop_ins)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.1e}"


def table(report: Report) -> str:
    from tabulate import tabulate

    body = [
        [r.neuron, r.backend, r.surrogate, _number(r.max_dv), f"{r.spikes_differing}/{r.spikes_compared}",
         "-" if r.ties is None else r.ties,
         _number(r.grad_input), _number(r.grad_params), "PASS" if r.passed else "FAIL"]
        for r in report.rows
    ]
    headers = ["neuron", "backend", "surrogate", "max |dV|", "spikes differing", "ties",
               "grad input (rel)", "grad params (rel)", "result"]
    return tabulate(body, headers=headers, disable_numparse=True)
