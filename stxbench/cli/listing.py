"""``stxbench list``: what is installed, with one-line descriptions, and what failed to load."""

from __future__ import annotations

from enum import Enum

import typer
from tabulate import tabulate

from stxbench.cli import common
from stxbench.cli.root import app
from stxbench.protocol import builtin_protocols, load_protocol


class What(str, Enum):
    all = "all"
    neurons = "neurons"
    pruners = "pruners"
    backends = "backends"
    datasets = "datasets"
    models = "models"
    protocols = "protocols"


def _components(host, kind: str) -> str:
    rows = []
    for name in host.names(kind):
        comp = host.get(kind, name)
        row = [name, comp.summary, comp.plugin]
        if kind == "pruner":
            fields = comp.obj.Params.model_fields
            row.insert(2, ", ".join(f"{k}={f.default}" for k, f in fields.items()) or "-")
        if kind == "backend":
            version = comp.obj.library_version()
            library = comp.obj.library or "torch"
            row.insert(2, f"{library} {version}" if version else f"{library} (not installed: "
                       f"pip install 'stxbench[{comp.obj.extra or library}]')")
        rows.append(row)
    headers = ["name", "description", "plugin"]
    if kind == "pruner":
        headers.insert(2, "parameters (defaults)")
    if kind == "backend":
        headers.insert(2, "library")
    return tabulate(rows, headers=headers)


def _protocols() -> str:
    rows = []
    for name in sorted(builtin_protocols()):
        p = load_protocol(name)
        rows.append([name, p.data.dataset, p.model.name, p.model.T,
                     f"{p.train.epochs}+{p.finetune.epochs}", "yes" if p.cpu_cheap else "no (GPU)",
                     p.description])
    return tabulate(rows, headers=["name", "dataset", "model", "T", "epochs", "CPU-cheap", "description"])


@app.command("list")
def list_command(what: What = typer.Argument(What.all, help="Which components to list.")) -> None:
    """List installed neurons, pruners, backends, datasets, models and protocols, and any plugin
    that failed to load (with the reason)."""
    host = common.host()
    sections = [w for w in What if w not in (What.all,)] if what is What.all else [what]
    blocks = []
    for section in sections:
        body = _protocols() if section is What.protocols else _components(host, section.value[:-1])
        blocks.append(f"{section.value}:\n{body}")
    if host.failures:
        blocks.append("failed plugins:\n" + tabulate(
            [[f.plugin, f.reason] for f in host.failures], headers=["plugin", "reason"]))
    if host.clashes:
        blocks.append("name clashes (built-ins win):\n" + "\n".join(f"  {c}" for c in host.clashes))
    typer.echo("\n\n".join(blocks))
