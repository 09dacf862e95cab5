"""``stxbench list``: what is installed, with one-line descriptions, and what failed to load."""

from __future__ import annotations

from enum import Enum

import typer
from stxbench.cli.layout import fit_table, wrap

from stxbench.cli import common
from stxbench.cli.root import app
from stxbench.run.protocol import builtin_protocols, load_protocol


class What(str, Enum):
    all = "all"
    families = "families"
    neurons = "neurons"
    pruners = "pruners"
    backends = "backends"
    datasets = "datasets"
    models = "models"
    protocols = "protocols"


#: section -> component kind
KIND = {What.families: "neuron family", What.neurons: "neuron", What.pruners: "pruner",
        What.backends: "backend", What.datasets: "dataset", What.models: "model"}
TITLE = {What.families: "neuron families"}


def _native_on(host, family: str) -> str:
    """The backends implementing ``family`` natively; every other backend runs its reference."""
    natives = [b for b in host.names("backend") if family in host.backend(b).families]
    return ", ".join(natives) or "none: reference only"


def _families_of(host, backend) -> str:
    """What a backend runs natively, and which installed families it runs through their reference."""
    native = ", ".join(backend.families) or "-"
    others = [f for f in host.names("neuron family") if f not in backend.families]
    return f"{native}" + (f" (via reference: {', '.join(others)})" if others else "")


def _neuron_family(host, spec) -> str:
    return spec.family if spec.family in host.components["neuron family"] else f"{spec.family} (not installed)"


def _components(host, kind: str) -> str:
    rows, notes = [], []
    for name in host.names(kind):
        comp = host.get(kind, name)
        row = [name, comp.summary, comp.plugin]
        if kind in ("pruner", "neuron family"):
            fields = comp.obj.Params.model_fields
            row.insert(2, ", ".join(f"{k}={f.default}" for k, f in fields.items()) or "-")
        if kind == "neuron family":
            row.insert(3, _native_on(host, name))
        if kind == "neuron":
            row.insert(2, _neuron_family(host, comp.obj))
        if kind == "backend":
            version = comp.obj.library_version()
            library = comp.obj.library or "torch"
            row.insert(2, f"{library} {version}" if version else f"{library} (not installed)")
            if not version:  # the command under the table: too long for a cell
                notes.append(f"{name}: pip install 'stxbench[{comp.obj.extra or library}]' installs {library}")
            row.insert(3, _families_of(host, comp.obj))
        rows.append(row)
    headers = ["name", "description", "plugin"]
    if kind in ("pruner", "neuron family"):
        headers.insert(2, "parameters (defaults)")
    if kind == "neuron family":
        headers.insert(3, "native on")
    if kind == "neuron":
        headers.insert(2, "family")
    if kind == "backend":
        headers[2:2] = ["library", "neuron families"]
    table = fit_table(rows, headers=headers, wrappable=[i for i, h in enumerate(headers) if h not in ("name", "plugin", "library")])
    return "\n".join([table, *(wrap(note) for note in notes)])


def _protocols() -> str:
    """A table of what each protocol runs, then each protocol's description as wrapped prose (a
    description column left 8 characters at 100 columns)."""
    rows, notes = [], []
    for name in sorted(builtin_protocols()):
        p = load_protocol(name)
        rows.append([name, p.data.dataset, p.model.name, p.model.T,
                     f"{p.train.epochs}+{p.finetune.epochs}", "yes" if p.cpu_cheap else "no (GPU)"])
        notes.append(wrap(f"{name}: {p.description}", indent="    "))
    # names are what a user types (--protocol NAME): they never wrap
    table = fit_table(rows, headers=["name", "dataset", "model", "T", "epochs", "CPU-cheap"], wrappable=[1, 2])
    return table + "\n\n" + "\n".join(notes)


@app.command("list")
def list_command(what: What = typer.Argument(What.all, help="Which components to list.")) -> None:
    """List installed neuron families, neurons, pruners, backends, datasets, models and
    protocols, and any plugin that failed to load (with the reason)."""
    host = common.host()
    sections = [w for w in What if w not in (What.all,)] if what is What.all else [what]
    blocks = []
    for section in sections:
        body = _protocols() if section is What.protocols else _components(host, KIND[section])
        blocks.append(f"{TITLE.get(section, section.value)}:\n{body}")
    if host.failures:
        blocks.append("failed plugins:\n" + fit_table(
            [[f.plugin, f.reason] for f in host.failures], headers=["plugin", "reason"]))
    if host.clashes:
        blocks.append("name clashes (built-ins win):\n" + "\n".join(wrap(f"  {c}", "    ") for c in host.clashes))
    typer.echo("\n\n".join(blocks))
