"""Turn what the user asked for into one validated `RunConfig`, before any work starts."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stxbench.neurons.site import Surrogate
from stxbench.run.baselines import PRUNER, baseline_neuron, baseline_protocol
from stxbench.measure.conventions import convention
from stxbench.data.splits import dataset_options
from stxbench.measure.energy import cost_model
from stxbench.run.errors import UsageError
from stxbench.run.processes import resolve_precision
from stxbench.host.plugin_host import PluginHost
from stxbench.run.paths import check_readable_dir, check_writable_dir, path_text
from stxbench.run.protocol import DEFAULT_PROTOCOL, MAX_SEED, Protocol, load_protocol, params_text, parse_value
from stxbench.run.config import RunConfig, RunOptions, cache_dir_source, default_cache_dir


def split_settings(settings: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` items -> (protocol overrides for dotted keys, pruner parameters for bare keys)."""
    protocol_overrides: dict[str, Any] = {}
    pruner_params: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"--set '{item}' must be KEY=VALUE (pruner parameter like sparsity=0.9, "
                "or dotted protocol key like train.epochs=3)"
            )
        target = protocol_overrides if "." in key else pruner_params
        target[key] = parse_value(value.strip())
    return protocol_overrides, pruner_params


def _admits_bool(annotation: Any) -> bool:
    """Whether a field of this type takes true/false (pydantic would read them as 1 and 0 for
    a number: `keep=true` is not `keep=1.0`)."""
    if annotation is bool or annotation is Any:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, bool) for a in args)
    return any(_admits_bool(a) for a in args)


def resolve_pruner_params(host: PluginHost, protocol: Protocol, pruner: str, given: dict[str, Any]) -> dict[str, Any]:
    params_model = host.pruner(pruner).Params
    fields = sorted(params_model.model_fields)
    for key in given:
        if key not in params_model.model_fields:
            valid = ", ".join(fields) if fields else "none"
            raise UsageError(
                f"--set {key}: pruner '{pruner}' has no parameter '{key}' (its parameters: {valid}; "
                "protocol keys are dotted, e.g. train.epochs)"
            )
    merged = {**protocol.pruners.get(pruner, {}), **given}
    for key, value in merged.items():
        field = params_model.model_fields.get(key)
        if isinstance(value, bool) and field is not None and not _admits_bool(field.annotation):
            raise UsageError(f"pruner '{pruner}': {key}={str(value).lower()}: a number or name belongs "
                             "here, not true/false")
    try:
        return params_model(**merged).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if not key:  # a rule over several parameters
            raise UsageError(f"pruner '{pruner}': {first['msg'].removeprefix('Value error, ')}") from None
        value = merged.get(key, "?")
        raise UsageError(f"pruner '{pruner}': {key}={value!r}: {first['msg']}") from None


def check_seed(option: str, seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{option} must be in 0..{MAX_SEED} (2**32 - 1, what every random generator "
                         f"of a run takes), got {seed}")


def check_paths(options: RunOptions, out_dir: Path) -> Path:
    """Every folder the run will write (output, cache) writable or creatable, the data folder
    readable, before any work; returns the cache folder."""
    check_writable_dir("--out", out_dir)
    source = cache_dir_source(options.cache_dir)
    cache_dir = Path(options.cache_dir) if options.cache_dir is not None else default_cache_dir()
    if source != "--cache-dir":
        path_text(source, str(cache_dir))  # $STXBENCH_CACHE or $HOME with a newline in it
    check_writable_dir(source, cache_dir)
    if options.data_root is not None:
        check_readable_dir("--data-root", path_text("--data-root", options.data_root))
    return cache_dir


def check_grid(host: PluginHost, protocol: Protocol) -> None:
    """Every cell of the protocol's compression grid must be a valid parameter set of an
    installed pruner (merged over the protocol's ``[pruners.X]`` defaults, as a run merges it):
    the first that is not is one line naming the cell."""
    for pruner, params in protocol.grid_cells():
        where = f"protocol {protocol.name}: grid.{pruner}"
        try:
            fields = host.pruner(pruner).Params.model_fields
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        unknown = sorted(set(params) - set(fields))
        if unknown:
            raise UsageError(f"{where}: pruner '{pruner}' has no parameter '{unknown[0]}' "
                             f"(its parameters: {', '.join(sorted(fields)) or 'none'})")
        try:
            resolve_pruner_params(host, protocol, pruner, params)
        except UsageError as exc:
            raise UsageError(f"{where} ({params_text(params)}): {exc}") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine (valid: auto, cpu)")
        index = device.partition(":")[2]
        count = torch.cuda.device_count()
        if index and not (index.isdigit() and int(index) < count):
            raise UsageError(f"--device {device}: this machine has CUDA devices cuda:0..cuda:{count - 1}")
        return device
    raise UsageError(f"--device {device}: valid devices are auto, cpu, cuda, cuda:N")


def resolve(
    host: PluginHost,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    neuron: str,
    pruner: str,
    backend: str,
    seed: int | None,
    settings: list[str],
    out_dir: Path,
    options: RunOptions = RunOptions(),
    plugins: tuple[str, ...] = (),
    job_cpus: int | None = None,
    baseline: str | None = None,
) -> RunConfig:
    """The run, every name and value checked before any work starts. ``job_cpus``: the CPUs of
    the job it will run in when that is not this process (a SLURM job). ``baseline``: one of the
    board's reference rows instead (`stxbench.run.baselines`): it names its own neuron and pruner."""
    protocol_overrides, given_params = split_settings(settings)
    board = load_protocol(protocol, protocol_overrides)
    proto = baseline_protocol(board, baseline)
    if baseline is not None:
        if given_params:
            raise UsageError(f"--set {next(iter(given_params))}: --baseline {baseline} is never pruned; "
                             "it takes no pruner parameter")
        neuron, pruner = baseline_neuron(board, baseline), PRUNER
    # Every name is checked before any work starts.
    host.dataset(proto.data.dataset)
    host.model_family(proto.model.name.split("-", 1)[0])
    base = host.neuron(proto.model.base_neuron)
    spec = host.neuron(neuron)
    back = host.backend(backend)
    back.check_available()
    surrogate = Surrogate(proto.model.surrogate, proto.model.surrogate_alpha)
    host.implementation(base, back, surrogate)  # natively, or through the family's reference
    host.implementation(spec, back, surrogate)
    for role, used in (("--neuron", spec), ("model.base_neuron", base)):
        if not host.neuron_family(used.family).spiking and baseline != "ann":
            raise UsageError(f"{role} {used.name}: not a spiking neuron ({used.summary}); it runs only as "
                             "the ANN twin, with --baseline ann")
    params = resolve_pruner_params(host, proto, pruner, given_params)
    check_grid(host, proto)
    cost_model(proto.energy_model)  # an unknown energy model is a usage error, before any work
    convention(proto.energy_convention)  # so is an unknown counting convention
    options.check(job_cpus)
    seed = proto.seeds[0] if seed is None else seed
    check_seed("--seed", seed)
    # the dataset refuses options it does not take, now rather than after the model is built
    host.dataset(proto.data.dataset).validate_options(dataset_options(proto))
    device = resolve_device(options.device)
    cache_dir = check_paths(options, out_dir)
    return RunConfig(
        **{
            **options.values(),
            "device": device,
            "precision": resolve_precision(options.precision, device),
            "compile": ((proto.compile or back.compile_by_default(device.split(":")[0]))
                        if options.compile is None else options.compile),
            "cache_dir": cache_dir,
        },
        protocol=proto,
        protocol_sha256=board.sha256(),
        official=not protocol_overrides and seed in proto.seeds,
        baseline=baseline,
        overrides=protocol_overrides,
        neuron=neuron,
        pruner=pruner,
        pruner_params=params,
        backend=backend,
        seed=seed,
        out_dir=out_dir,
        plugins=tuple(plugins),
    )


def unofficial_reasons(configs: list[RunConfig]) -> list[str]:
    """Why these runs are unofficial (their records cannot go to the leaderboard), from the
    fields that decide `RunConfig.official`: a ``--set`` that changes the protocol, a seed the
    protocol does not list. Empty when every one is official."""
    unofficial = [c for c in configs if not c.official]
    why = []
    overrides = sorted({key for config in unofficial for key in config.overrides})
    if overrides:
        why.append(f"--set {', '.join(overrides)} changes the protocol")
    seeds = sorted({config.seed for config in unofficial if config.seed not in config.protocol.seeds})
    if seeds:
        listed = ", ".join(map(str, unofficial[0].protocol.seeds))
        why.append(f"seed(s) {', '.join(map(str, seeds))} not among the protocol's ({listed})")
    if unofficial and not why:  # official is decided above; a new rule must say its reason here
        why.append("the protocol or seed differs from the official configuration")
    return why
