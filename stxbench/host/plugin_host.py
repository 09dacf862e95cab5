"""The plugin host: finds plugins, collects their components, contains their failures."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from torch import nn

from stxbench.data.contract import Dataset
from stxbench.models.base import ModelFamily
from stxbench.models.pruning import Pruner, PrunerParams
from stxbench.neurons.contract import Backend, NeuronSpec
from stxbench.neurons.site import NeuronSite, Surrogate
from stxbench.neurons.families import NeuronFamily, NeuronParams

from stxbench.host import hookspecs
from stxbench.record.code_identity import plugin_files
from stxbench.run.errors import UsageError, one_line, unknown_choice
from stxbench.run.signals import from_plugin

ENTRY_POINT_GROUP = "stxbench"

# kind -> (registration hook, component type)
KINDS: dict[str, tuple[str, type]] = {
    "neuron family": ("stxbench_add_neuron_families", NeuronFamily),
    "neuron": ("stxbench_add_neurons", NeuronSpec),
    "backend": ("stxbench_add_backends", Backend),
    "pruner": ("stxbench_add_pruners", Pruner),
    "dataset": ("stxbench_add_datasets", Dataset),
    "model": ("stxbench_add_models", ModelFamily),
}


@dataclass(frozen=True)
class Component:
    """One registered neuron, backend, pruner, dataset or model family, and who provided it."""

    kind: str
    name: str
    obj: Any
    plugin: str
    module: ModuleType | None

    @property
    def summary(self) -> str:
        return getattr(self.obj, "summary", "")


@dataclass(frozen=True)
class NeuronImplementation:
    """How one neuron runs on one backend: natively (the backend's ``make_neuron``) or through
    its family's reference (`stxbench.api.NeuronFamily.Reference`), which runs on any backend."""

    spec: NeuronSpec
    family: NeuronFamily
    backend: Backend
    surrogate: Surrogate
    native: bool

    @property
    def kind(self) -> str:
        return "native" if self.native else "reference"

    def make(self, site: NeuronSite) -> nn.Module:
        if self.native:
            return self.backend.make_neuron(self.spec, site, self.surrogate)
        return self.family.Reference(self.spec, site, self.surrogate)


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    reason: str


def _names(value: object) -> bool:
    """A tuple (or list) of strings: what ``Backend.families`` must be (a bare string is not)."""
    return isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)


def _family_problem(family: NeuronFamily) -> str | None:
    """Why a contributed neuron family cannot be used, or None."""
    params, reference = getattr(family, "Params", None), getattr(family, "Reference", None)
    if not (isinstance(params, type) and issubclass(params, NeuronParams)):
        return "Params must subclass stxbench.api.NeuronParams"
    if reference is not None and not (isinstance(reference, type) and issubclass(reference, nn.Module)):
        return "Reference must be a torch.nn.Module subclass (or None)"
    if not isinstance(getattr(family, "summary", None), str):
        return "no summary"
    return None


def _where(exc: BaseException, always: bool = False) -> str:
    """`` (file.py:line)`` of the innermost frame that raised ``exc``: always, or for what
    plugin code hardly raises by mistake (``sys.exit()``, ``KeyboardInterrupt``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or (isinstance(exc, Exception) and not always):
        return ""
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})"


class PluginHost:
    """Loads plugins from the ``stxbench`` entry-point group and from ``-p`` modules."""

    def __init__(self, extra_modules: Sequence[str] = ()):
        self.pm = pluggy.PluginManager("stxbench")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.clashes: list[str] = []
        self._builtin: set[str] = set()
        self._muted_observers: set[str] = set()
        self._load_entry_points()
        for name in extra_modules:
            self._load_module(name)
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self._collect()

    # -- loading ---------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        # Like pluggy's load_setuptools_entrypoints, but one failing import is contained.
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        # First-party plugins register first so that they win name clashes.
        ordered = sorted(eps, key=lambda ep: (ep.dist is None or ep.dist.name != "stxbench", ep.name))
        for ep in ordered:
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            try:
                module = ep.load()
                self._register(module, ep.name)
            except BaseException as exc:  # a broken third-party plugin must not break the host
                if not from_plugin(exc):
                    raise
                self.failures.append(PluginFailure(ep.name, f"import failed: {one_line(exc)}{_where(exc)}"))
                continue
            if ep.dist is not None and ep.dist.name == "stxbench":
                self._builtin.add(ep.name)

    def _register(self, module: ModuleType, name: str) -> None:
        """Register ``module`` under ``name``; one already registered (an installed plugin also
        named with ``-p``) is left as it is."""
        if self.pm.is_registered(module):
            return
        try:
            self.pm.register(module, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:  # a hook of the wrong signature
            raise RuntimeError(one_line(exc).removeprefix("PluginValidationError: ")) from None

    def _load_module(self, name: str) -> None:
        """``-p module``: the user asked for it explicitly, so failing to import is an error."""
        if self.pm.has_plugin(name):
            return
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or name.startswith(f"{exc.name}."):
                raise UsageError(
                    f"-p {name}: no module named '{name}' on sys.path (cwd is {Path.cwd()})"
                ) from None
            raise UsageError(f"-p {name}: import failed: {one_line(exc)}") from None
        except BaseException as exc:
            if not from_plugin(exc):
                raise
            raise UsageError(f"-p {name}: import failed: {one_line(exc)}{_where(exc)}") from None
        try:
            self._register(module, name)
        except RuntimeError as exc:
            raise UsageError(f"-p {name}: {exc}") from None

    def _collect(self) -> None:
        for kind, (hook_name, expected_type) in KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            # get_hookimpls() lists implementations in registration order: built-ins first.
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                try:
                    produced = impl.function()
                except BaseException as exc:
                    if not from_plugin(exc):
                        raise
                    self.failures.append(
                        PluginFailure(plugin_name, f"{hook_name} raised {one_line(exc)}{_where(exc)}")
                    )
                    continue
                if not isinstance(produced, (list, tuple)):
                    self.failures.append(
                        PluginFailure(
                            plugin_name,
                            f"{hook_name} must return a list of {expected_type.__name__}, "
                            f"got {type(produced).__name__}",
                        )
                    )
                    continue
                for obj in produced:
                    self._add(kind, obj, expected_type, plugin_name, impl.plugin)

    def _add(self, kind: str, obj: Any, expected: type, plugin: str, module: Any) -> None:
        if not isinstance(obj, expected):
            self.failures.append(
                PluginFailure(
                    plugin, f"returned a {type(obj).__name__} where a {expected.__name__} belongs"
                )
            )
            return
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            self.failures.append(PluginFailure(plugin, f"a {kind} without a name"))
            return
        params = getattr(obj, "Params", PrunerParams)
        if kind == "pruner" and not (isinstance(params, type) and issubclass(params, PrunerParams)):
            self.failures.append(PluginFailure(
                plugin, f"pruner '{name}': Params must subclass stxbench.api.PrunerParams"))
            return
        if kind == "backend" and not _names(getattr(obj, "families", None)):
            self.failures.append(PluginFailure(
                plugin, f"backend '{name}': families must be a tuple of neuron family names"))
            return
        if kind == "neuron family":
            problem = _family_problem(obj)
            if problem:
                self.failures.append(PluginFailure(plugin, f"neuron family '{name}': {problem}"))
                return
        registry = self.components[kind]
        if name in registry:
            winner = registry[name]
            self.clashes.append(
                f"{kind} '{name}' from plugin '{plugin}' ignored: already provided by '{winner.plugin}'"
            )
            return
        mod = module if isinstance(module, ModuleType) else sys.modules.get(type(obj).__module__)
        registry[name] = Component(kind, name, obj, plugin, mod)

    # -- lookup ----------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        registry = self.components[kind]
        if name in registry:
            return registry[name]
        err = unknown_choice(kind, name, registry)
        if self.failures:
            err = UsageError(f"{err} ({len(self.failures)} plugin(s) failed to load: see `stxbench list`)")
        raise err

    def neuron(self, name: str) -> NeuronSpec:
        """The neuron ``name``; `UsageError` when its family is not installed or its parameters
        are not that family's."""
        comp = self.get("neuron", name)
        spec = comp.obj
        families = self.components["neuron family"]
        if spec.family not in families:
            raise UsageError(
                f"neuron '{name}' (plugin '{comp.plugin}') is of neuron family '{spec.family}', which no "
                f"installed plugin provides; valid families: {', '.join(sorted(families)) or '(none installed)'}"
            )
        family = families[spec.family].obj
        if not isinstance(spec.params, family.Params):
            raise UsageError(
                f"neuron '{name}' (plugin '{comp.plugin}'): params are {type(spec.params).__name__}, but "
                f"family '{spec.family}' takes {family.Params.__name__}"
            )
        return spec

    def neuron_family(self, name: str) -> NeuronFamily:
        return self.get("neuron family", name).obj

    def implementation(self, spec: NeuronSpec, backend: Backend,
                       surrogate: Surrogate) -> NeuronImplementation:
        """How ``spec`` runs on ``backend``: natively when the backend implements its family
        (`UsageError` when it cannot run this neuron or surrogate), else through the family's
        reference (`UsageError` when the family has none)."""
        family = self.neuron_family(spec.family)
        if spec.family in backend.families:
            backend.check_neuron(spec, surrogate)
            return NeuronImplementation(spec, family, backend, surrogate, native=True)
        if family.Reference is None:
            natives = [n for n in self.names("backend") if spec.family in self.backend(n).families]
            raise UsageError(
                f"backend '{backend.name}' does not implement neuron family '{spec.family}' (neuron "
                f"'{spec.name}') and the family has no reference implementation; backends that "
                f"implement it: {', '.join(natives) or '(none installed)'}"
            )
        return NeuronImplementation(spec, family, backend, surrogate, native=False)

    def backend(self, name: str) -> Backend:
        return self.get("backend", name).obj

    def pruner(self, name: str) -> Pruner:
        return self.get("pruner", name).obj

    def dataset(self, name: str) -> Dataset:
        return self.get("dataset", name).obj

    def model_family(self, name: str) -> ModelFamily:
        return self.get("model", name).obj

    def is_builtin(self, plugin: str) -> bool:
        return plugin in self._builtin

    def owner(self, path: str | Path) -> Component | None:
        """The component whose plugin's source holds the file ``path`` (first-party included)."""
        target = Path(path).resolve()
        for registry in self.components.values():
            for comp in registry.values():
                if any(p.resolve() == target for p in plugin_files(comp.module)):
                    return comp
        return None

    def blame(self, exc: BaseException) -> str | None:
        """One line naming the third-party plugin whose code raised ``exc`` (innermost frame
        first), or None when no third-party plugin is in the traceback: a bug of stxbench's own
        keeps its traceback, a contributed plugin's failure is contained to the run using it."""
        owners: dict[str, Component] = {}
        for registry in self.components.values():
            for comp in registry.values():
                if not self.is_builtin(comp.plugin):
                    for path in plugin_files(comp.module):
                        owners[str(path.resolve())] = comp
        frames = traceback.extract_tb(exc.__traceback__)
        for frame in reversed(frames):
            comp = owners.get(str(Path(frame.filename).resolve()))
            if comp is not None:
                return (f"{comp.kind} '{comp.name}' (plugin '{comp.plugin}') failed: {one_line(exc)} "
                        f"({Path(frame.filename).name}:{frame.lineno})")
        return None

    # -- observers -------------------------------------------------------------------------

    def notify(self, hook_name: str, **kwargs: Any) -> list[str]:
        """Call an observer hook on every plugin; contain and report failures.

        Returns one warning line per observer that failed (each observer warns once).
        """
        warnings = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            key = f"{impl.plugin_name}:{hook_name}"
            if key in self._muted_observers:
                continue
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except KeyboardInterrupt:
                raise  # Ctrl-C, or a plugin asking to stop: the run is interrupted, checkpoint kept
            except BaseException as exc:  # sys.exit() included: an observer never ends a run
                self._muted_observers.add(key)
                warnings.append(
                    f"observer {impl.plugin_name}.{hook_name} raised {one_line(exc)}{_where(exc, always=True)}; "
                    "it is left out for the rest of the run"
                )
        return warnings
