"""Command-line options shared by ``stxbench run`` and ``stxbench sweep``, declared once.

`with_run_options` gives a command every field of `stxbench.run.config.RunOptions` as an option
(flags and help from the field) and hands the command one ``options: RunOptions``; the aliases
below are the other options both commands take. To add a run option, add a field to
`RunOptions`: nothing here changes. `with_model_options` does the same for the fields of a
pydantic model that a file can also hold (sweep's SLURM profile).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated

import typer
from pydantic import BaseModel

from stxbench.run.config import RunOptions

ProtocolOption = Annotated[str, typer.Option(
    "--protocol", help="Protocol name (stxbench list protocols) or a .toml path.")]
SettingsOption = Annotated[list[str], typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Pruner parameter (sparsity=0.9) or dotted protocol key (train.epochs=3, which makes the "
    "run unofficial); repeatable. A sweep gives pruner parameters to the pruners that have them.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _run_option_parameters() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(RunOptions)
    params = []
    for f in dataclasses.fields(RunOptions):
        spec = f.metadata["cli"]
        extra = {"parser": spec.parser} if spec.parser else {}
        info = typer.Option(*spec.decls, help=spec.help, show_default=spec.show_default, **extra)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=f.default, annotation=Annotated[hints[f.name], info]))
    return params


def with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Replace the command's ``options: RunOptions`` parameter by one option per field."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name != "options"]
    names = [f.name for f in dataclasses.fields(RunOptions)]

    @functools.wraps(command)
    def wrapper(**kwargs):
        options = RunOptions(**{name: kwargs.pop(name) for name in names})
        return command(**kwargs, options=options)

    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + _run_option_parameters()
    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer reads the signature above, not the command's
    return wrapper


def with_model_options(param: str, model: type[BaseModel], panel: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Replace the command's parameter ``param`` by one option per field of the pydantic
    ``model`` (``--gpus-per-job`` for ``gpus_per_job``; a list field is a repeatable option),
    shown under ``panel`` in --help; the command receives the values that were given, by field
    name (the model, fed from a file too, checks them)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != param]
        added = []
        for name, field in model.model_fields.items():
            repeated = typing.get_origin(field.annotation) is list
            base = [a for a in typing.get_args(field.annotation) if a is not type(None)] or [field.annotation]
            info = typer.Option(f"--{name.replace('_', '-')}", help=field.description, rich_help_panel=panel,
                                show_default=False)
            hint = list[str] if repeated else base[0] | None
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                           default=[] if repeated else None, annotation=Annotated[hint, info]))

        @functools.wraps(command)
        def wrapper(**kwargs):
            given = {}
            for name in model.model_fields:
                value = kwargs.pop(name)
                if value not in (None, []):
                    given[name] = value
            return command(**kwargs, **{param: given})

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__
        return wrapper

    return decorate
