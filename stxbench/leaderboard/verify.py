"""What one record must satisfy to be a leaderboard entry; shared by ``submit`` and ``check``.

Each problem names the record field it is about, so a tampered or stale entry is reported as
``<file>: <field>: <what is wrong>``. The checks need no re-run: the protocol hash against the
current protocol file, energy recomputed from the stored counts, accuracy against the stored
correct/test counts, the code identity (`stxbench.record.code_identity`) against the installed code. Numbers that only a
re-run can confirm (accuracy, counts) are checked by ``check --rerun`` (`rerun.py`).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from types import ModuleType

from pydantic import ValidationError

import stxbench

from stxbench.run.baselines import BASELINES, PRUNER, baseline_neuron, baseline_protocol
from stxbench.measure.conventions import DEFAULT_CONVENTION, NoRawCounts
from stxbench.run.cpu_pin import PINS
from stxbench.measure.energy import cost_model, energy_of, estimate
from stxbench.run.errors import UsageError
from stxbench.record.code_identity import CORE, core_digest, installed_identity, package_name
from stxbench.host.plugin_host import KINDS, PluginHost
from stxbench.leaderboard.names import name_problems, names_for
from stxbench.leaderboard.problem import Problem
from stxbench.leaderboard.store import ProtocolLookup
from stxbench.record.schema import Record

#: stored floats are compared to recomputed ones to this relative precision (they are computed by
#: the same expressions, so in practice they agree exactly; the margin only absorbs summation
#: order, e.g. per-layer counts summed in another order)
REL_TOL = 1e-9


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


def repository_plugins() -> set[str] | None:
    """The plugin packages CI can build from this checkout: under its ``plugins/`` folder and
    registered in its pyproject.toml's ``stxbench`` entry points (what ``pip install -e .``
    installs); None where stxbench does not run from a checkout."""
    repo = Path(stxbench.__file__).resolve().parent.parent
    try:
        project = tomllib.loads((repo / "pyproject.toml").read_text())
    except (OSError, tomllib.TomlDecodeError):
        return None
    points = project.get("project", {}).get("entry-points", {}).get("stxbench", {})
    packages = {str(target).split(":")[0].split(".")[0] for target in points.values()}
    return {name for name in packages if (repo / "plugins" / name).exists() or (repo / "plugins" / f"{name}.py").exists()}


def installed_code(host: PluginHost) -> dict[str, str]:
    """The code identity of the core and of every installed plugin package, keyed as records key them."""
    code = {CORE: core_digest()}
    modules = [host.get(kind, name).module for kind in KINDS for name in host.names(kind)]
    modules += [m for m in host.pm.get_plugins() if isinstance(m, ModuleType)]  # plugins that add nothing yet
    for module in modules:  # several components of one package: its digest once
        if module is not None and package_name(module) not in code:
            code[package_name(module)] = installed_identity(module)
    return code


class Verifier:
    """Checks records against the current protocols and the installed plugins."""

    def __init__(self, protocols: ProtocolLookup, host: PluginHost):
        self.protocols = protocols
        self.host = host
        self._code: dict[str, str] | None = None
        #: plugin packages an entry may use: those CI builds from the repository (None: any)
        self.buildable = repository_plugins()

    @property
    def code(self) -> dict[str, str]:
        if self._code is None:
            self._code = installed_code(self.host)
        return self._code

    def problems(self, record: Record) -> list[Problem]:
        try:
            protocol = self.protocols.get(record.protocol.name)
        except UsageError as exc:
            return [Problem("protocol.name", str(exc))]
        found = self._official(record, protocol)
        baseline = record.config.baseline
        if baseline is not None:  # a reference row: checked against the protocol it ran
            if baseline not in BASELINES:
                return [*found, Problem("config.baseline", f"{baseline!r} is not a baseline "
                                                           f"(valid: {', '.join(BASELINES)})")]
            found += self._baseline(record, protocol)
            protocol = baseline_protocol(protocol, baseline)
        found += self._metrics(record)
        found += self._recovery(record, protocol)
        found += self._names(record, protocol)
        found += self._energy(record, protocol.energy_model, protocol.energy_convention)
        found += self._plugins(record)
        found += self._numerics(record, protocol)
        return found

    def _numerics(self, record: Record, protocol) -> list[Problem]:
        """An entry of a protocol that pins CPU numerics was run on a CPU, under the pin."""
        if protocol.cpu_pin is None:
            return []
        pin = PINS[protocol.cpu_pin]
        n = record.provenance.cpu_numerics
        wanted = {"pin": pin.id, "aten_capability": pin.aten_capability.upper(),
                  "mkl_branch": pin.mkl_cbwr.split(",")[0], "mkldnn": pin.mkldnn, "ieee_sqrt": pin.ieee_sqrt}
        if n is None:
            return [Problem("provenance.cpu_numerics", f"missing: protocol {protocol.name} pins CPU numerics "
                            f"({pin.id}), so its entries are CPU runs made under the pin (this one was made on "
                            "a GPU or by an older stxbench); re-run it and submit with --replace")]
        for key, value in wanted.items():
            if getattr(n, key) != value:
                return [Problem(f"provenance.cpu_numerics.{key}", f"{getattr(n, key)!r}, but protocol "
                                f"{protocol.name}'s pin {pin.id} runs {value!r}; re-run it and submit with --replace")]
        return []

    def _names(self, record: Record, protocol) -> list[Problem]:
        names = names_for(protocol, self.host)
        if isinstance(names, str):  # cannot build the model here: the names go unchecked
            return []
        return name_problems(record, names)

    def _baseline(self, record: Record, board_protocol) -> list[Problem]:
        """A baseline runs its own model, neuron and no pruner (`stxbench.run.baselines`)."""
        c, ran = record.config, baseline_protocol(board_protocol, record.config.baseline)
        wanted = {"neuron": baseline_neuron(board_protocol, c.baseline), "pruner": PRUNER, "pruner_params": {}}
        return [Problem(f"config.{key}", f"{getattr(c, key)!r} but baseline {c.baseline} runs {value!r}")
                for key, value in wanted.items() if getattr(c, key) != value] + self._pinned(record, ran)

    def _pinned(self, record: Record, protocol) -> list[Problem]:
        c = record.config
        pinned = {"dataset": protocol.data.dataset, "model": protocol.model.name, "T": protocol.model.T,
                  "base_neuron": protocol.model.base_neuron, "surrogate": protocol.model.surrogate}
        return [Problem(f"config.{key}", f"{getattr(c, key)!r} but protocol {protocol.name} pins {value!r}")
                for key, value in pinned.items() if getattr(c, key) != value]

    def _official(self, record: Record, protocol) -> list[Problem]:
        found = []
        p, c = record.protocol, record.config
        if not p.official:
            found.append(Problem("protocol.official", "the run is unofficial; only official runs enter a leaderboard"))
        if p.overrides:
            keys = ", ".join(sorted(p.overrides))
            found.append(Problem("protocol.overrides", f"the run overrode the protocol ({keys}): unofficial"))
        if c.seed not in protocol.seeds:
            found.append(Problem("config.seed", f"seed {c.seed} is not one of protocol {protocol.name}'s seeds {protocol.seeds}"))
        current = protocol.sha256()
        if p.sha256 != current and not p.overrides:  # overrides change the hash: reported above
            found.append(Problem(
                "protocol.sha256",
                f"stale: run under protocol hash {p.sha256[:12]}, the current {protocol.name} protocol "
                f"hashes to {current[:12]}; re-run it and submit with --replace, or remove it",
            ))
        if c.baseline is None:
            found += self._pinned(record, protocol)
        for kind in ("neuron", "pruner", "backend"):
            name = getattr(c, kind)
            if name not in self.host.names(kind):
                found.append(Problem(f"config.{kind}", f"{kind} '{name}' is not installed here"))
        if c.pruner in self.host.names("pruner"):
            found += self._pruner_params(record)
        return found

    def _pruner_params(self, record: Record) -> list[Problem]:
        c = record.config
        try:
            resolved = self.host.pruner(c.pruner).Params(**c.pruner_params).model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            return [Problem("config.pruner_params", f"not valid for pruner '{c.pruner}': "
                            f"{'.'.join(map(str, first['loc']))}: {first['msg']}")]
        if json.dumps(resolved, sort_keys=True) != json.dumps(c.pruner_params, sort_keys=True):
            return [Problem("config.pruner_params", f"{c.pruner_params} is not the complete parameter set "
                            f"pruner '{c.pruner}' resolves it to ({resolved})")]
        return []

    def _metrics(self, record: Record) -> list[Problem]:
        """What the metrics imply about each other: accuracies are whole images, sparsity and
        the per-matrix figures follow from the matrix counts, rates are fractions."""
        m = record.metrics
        found = []
        if m.correct > m.test_samples:
            found.append(Problem("metrics.correct", f"{m.correct} correct of {m.test_samples} test samples"))
        elif not _close(m.accuracy, m.correct / m.test_samples):
            found.append(Problem("metrics.accuracy", f"{m.accuracy!r} is not correct/test_samples = "
                                 f"{m.correct}/{m.test_samples} = {m.correct / m.test_samples!r}"))
        for key in ("accuracy_dense", "accuracy_pruned"):
            if getattr(m, key) is None:  # measured on the validation split instead (`_recovery`)
                continue
            images = getattr(m, key) * m.test_samples
            if abs(images - round(images)) > 1e-6:
                found.append(Problem(f"metrics.{key}", f"{getattr(m, key)!r} is not a whole number of the "
                                     f"{m.test_samples} test samples"))
        for name, rate in m.firing_rates.items():
            if not 0.0 <= rate <= 1.0:
                found.append(Problem(f"metrics.firing_rates[{name}]", f"{rate!r} is not a fraction in [0, 1]"))
        rates = [r for r in m.firing_rates.values() if 0.0 <= r <= 1.0]
        if m.firing_rate is None:
            if m.firing_rates:
                found.append(Problem("metrics.firing_rate", f"missing, but the record has rates for "
                                     f"{len(m.firing_rates)} neuron layer(s): their mean belongs here"))
        elif rates and not min(rates) * (1 - REL_TOL) <= m.firing_rate <= max(rates) * (1 + REL_TOL):
            found.append(Problem("metrics.firing_rate", f"{m.firing_rate!r} is not a mean of the per-layer "
                                 f"rates (they range from {min(rates)!r} to {max(rates)!r})"))
        found += self._matrices(record)
        return found

    def _matrices(self, record: Record) -> list[Problem]:
        m = record.metrics
        found = []
        for stat in m.matrices:
            where = f"metrics.matrices[{stat.name}]"
            out_f, in_f = stat.shape
            if stat.dense != out_f * in_f:
                found.append(Problem(f"{where}.dense", f"{stat.dense} but its shape {list(stat.shape)} holds {out_f * in_f}"))
            elif stat.nonzero > min(stat.params, stat.dense):
                found.append(Problem(f"{where}.nonzero", f"{stat.nonzero} nonzero weights of {stat.params} stored "
                                     f"({stat.dense} dense)"))
            elif not _close(stat.sparsity, 1.0 - stat.nonzero / stat.dense):
                found.append(Problem(f"{where}.sparsity", f"{stat.sparsity!r} is not 1 - nonzero/dense = "
                                     f"{1.0 - stat.nonzero / stat.dense!r}"))
        dense = sum(stat.dense for stat in m.matrices)
        if dense > 0 and not found:
            sparsity = 1.0 - sum(stat.nonzero for stat in m.matrices) / dense
            if not math.isclose(m.sparsity, sparsity, rel_tol=REL_TOL, abs_tol=1e-12):
                found.append(Problem("metrics.sparsity", f"{m.sparsity!r} but its matrices give "
                                     f"1 - nonzero/dense = {sparsity!r}"))
        return found

    def _recovery(self, record: Record, protocol) -> list[Problem]:
        """A protocol with a validation split measures recovery (and keeps the test set for the
        end); one without measures test accuracy before fine-tuning instead."""
        spec, rec, m = protocol.data.validation, record.recovery, record.metrics
        if spec is None:
            if rec is not None:
                return [Problem("recovery", f"protocol {protocol.name} has no validation split, yet the "
                                "entry carries a recovery curve")]
            missing = [key for key in ("accuracy_dense", "accuracy_pruned") if getattr(m, key) is None]
            return [Problem(f"metrics.{key}", "missing: the protocol has no validation split, so the run "
                            "measures it on the test set") for key in missing]
        if rec is None:
            return [Problem("recovery", f"missing: protocol {protocol.name} measures recovery on its "
                            "validation split")]
        found = []
        if rec.validation_samples != spec.samples:
            found.append(Problem("recovery.validation_samples",
                                 f"{rec.validation_samples} but the protocol carves {spec.samples}"))
        if rec.diagnostics.samples != spec.diagnostic_samples:
            found.append(Problem("recovery.diagnostics.samples",
                                 f"{rec.diagnostics.samples} but the protocol pins {spec.diagnostic_samples}"))
        epochs = [point.epoch for point in rec.curve]
        if epochs != list(range(protocol.finetune.epochs + 1)):
            found.append(Problem("recovery.curve", f"epochs {epochs}, but the protocol fine-tunes for "
                                 f"{protocol.finetune.epochs} (a point at 0 and after each epoch)"))
        counts = [rec.accuracy_dense] + [point.accuracy for point in rec.curve]
        if not all(_close(a * spec.samples, round(a * spec.samples)) for a in counts):
            found.append(Problem("recovery.curve", f"an accuracy is not a count of the {spec.samples} "
                                 "validation samples"))
        return found

    def _energy(self, record: Record, protocol_model: str, protocol_convention: str) -> list[Problem]:
        counts, energy = record.counts, record.energy
        if counts is None or energy is None:
            missing = "counts" if counts is None else "energy"
            return [Problem(missing, "missing: a leaderboard entry shows energy, so it needs op counts "
                            "and energy (re-run without --no-counts)")]
        found = []
        for kind in ("mac", "ac", "ac_int"):
            layer_sum = sum(layer.effective_ops for layer in counts.layers if layer.kind == kind)
            total = getattr(counts, kind)
            if not _close(total, layer_sum):
                found.append(Problem(f"counts.{kind}", f"{total!r} but its layers ({kind}) sum to {layer_sum!r}"))
        if energy.model_id != protocol_model:
            return [*found, Problem("energy.model_id", f"{energy.model_id!r} but the protocol pins {protocol_model!r}")]
        try:
            table = cost_model(protocol_model)
        except UsageError as exc:
            return [*found, Problem("energy.model_id", str(exc))]
        for key in ("e_mac_pj", "e_ac_pj"):
            if getattr(energy, key) != getattr(table, key):
                found.append(Problem(f"energy.{key}", f"{getattr(energy, key)!r} but cost table {table.id} "
                                     f"says {getattr(table, key)!r}"))
        if (energy.convention or DEFAULT_CONVENTION) != protocol_convention:
            return [*found, Problem("energy.convention", f"{energy.convention!r} but the protocol pins "
                                    f"{protocol_convention!r}")]
        try:
            recomputed = energy_of(counts, table, protocol_convention).mj_per_sample
        except NoRawCounts:
            return [*found, Problem("counts.ops", "missing: the protocol's energy convention "
                                    f"{protocol_convention!r} needs per-op counts (re-run the entry)")]
        if not _close(energy.mj_per_sample, recomputed):
            found.append(Problem("energy.mj_per_sample", f"{energy.mj_per_sample!r} but the stored counts "
                                 f"give {recomputed!r} under {table.id}"))
        found += self._energies(record)
        return found

    def _energies(self, record: Record) -> list[Problem]:
        """Every stored per-convention estimate must be what the stored counts give."""
        found = []
        for stored in record.energies or []:
            where = f"energies[{stored.convention}, {stored.cost_model}, {stored.pricing}]"
            try:
                again = estimate(record.counts, stored.convention, stored.cost_model,
                                 merge=stored.pricing == "merge-if-cheaper")
            except (UsageError, NoRawCounts) as exc:
                found.append(Problem(where, f"cannot be recomputed: {exc or 'no per-op counts'}"))
                continue
            if not _close(stored.mj_per_sample, again.mj_per_sample) or stored.merged != again.merged:
                found.append(Problem(where, f"{stored.mj_per_sample!r} (merged {stored.merged}) but the "
                                     f"stored counts give {again.mj_per_sample!r} (merged {again.merged})"))
        return found

    def _plugins(self, record: Record) -> list[Problem]:
        """Stale exactly when code that computes the entry's numbers changed since it was made."""
        if record.provenance.code is None:
            return [Problem("provenance.code", "stale: made before stxbench recorded its code identity, "
                            "so whether its code changed is unknown; re-run it and submit with --replace")]
        found = []
        for package, digest in record.provenance.code.items():
            field = f"provenance.code[{package}]"
            current = self.code.get(package)
            if current is None:
                found.append(Problem(field, f"stale: no installed plugin package {package}; install it "
                                     "(or vendor it under plugins/) to check this entry"))
            elif package != CORE and self.buildable is not None and package not in self.buildable:
                found.append(Problem(field, f"plugin {package} is not in this repository, so CI cannot install "
                                     "it and re-run the entry: vendor it under plugins/ and register it in "
                                     "pyproject.toml (CONTRIBUTING.md, 'An entry with your own plugin')"))
            elif current != digest:
                what = "the core's numbers path" if package == CORE else f"plugin {package}"
                found.append(Problem(field, f"stale: the code of {what} changed since the run "
                                     f"({digest[:12]} -> {current[:12]}; comments and docstrings do not count) "
                                     "and no re-run under the new code reproduced it; verify it with "
                                     f"`stxbench leaderboard check --rerun-unverified` (a receipt), or re-run it and "
                                     "submit with --replace", redeemable=True))
        return found
