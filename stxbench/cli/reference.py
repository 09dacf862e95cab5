"""The CLI reference (docs/cli.md), generated from the typer app's command objects, so it lists
exactly the commands, arguments and options that exist, with their help texts and defaults.

    python -m stxbench.cli.reference > docs/cli.md

A test (tests/test_docs_site.py) regenerates it and fails when the committed file differs.
"""

from __future__ import annotations

import re
import sys

import typer.main

HEADER = """\
# CLI reference

Every command and sub-command of `stxbench`, with its arguments and options, as `--help` shows
them. This page is generated from the command-line app itself; do not edit it by hand:

    python -m stxbench.cli.reference > docs/cli.md

(a test fails when it is out of date). Mistakes on the command line are refused before any work
with one line and exit code 2; see [Running](running.md) for how the commands fit together.
"""

_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _text(text: str) -> str:
    """Help text as markdown that renders as written: markdown's special characters escaped,
    ``<...>`` (placeholders such as ``<root>``) kept from being read as HTML."""
    text = _SPECIAL.sub(r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _paragraphs(help_text: str) -> list[str]:
    """A command's help as paragraphs: typer's line wraps joined, blank lines kept."""
    blocks = re.split(r"\n\s*\n", help_text.replace("\b", "").strip())
    return [_text(" ".join(line.strip() for line in block.splitlines())) for block in blocks if block.strip()]


def _param_line(record: tuple[str, str]) -> str:
    names, help_text = record
    help_text = " ".join(help_text.split())
    return f"* `{names}`: {_text(help_text)}" if help_text else f"* `{names}`"


def _command_lines(command, ctx, level: int) -> list[str]:
    lines = [f"{'#' * level} `{ctx.command_path}`", ""]
    for paragraph in _paragraphs(command.help or ""):
        lines += [paragraph, ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += [f"    {ctx.command_path} {usage}", ""]
    records = [(param, param.get_help_record(ctx)) for param in command.get_params(ctx)]
    records = [(param, record) for param, record in records if record is not None]
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        rows = [record for param, record in records if param.param_type_name == kind]
        if rows:
            lines += [f"{title}:", ""]
            lines += [_param_line(record) for record in rows]
            lines.append("")
    if hasattr(command, "list_commands"):
        names = command.list_commands(ctx)
        if names and level > 2:
            lines += ["Commands: " + ", ".join(f"`{name}`" for name in names) + ".", ""]
        for name in names:
            sub = command.get_command(ctx, name)
            sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
            lines += _command_lines(sub, sub_ctx, level + 1)
    return lines


def reference() -> str:
    """The whole reference as markdown: the root command, then every command in the order the
    app lists them, sub-commands under their group."""
    import importlib

    importlib.import_module("stxbench.cli")  # the package registers every command on the app
    from stxbench.cli.root import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="stxbench")
    lines = [HEADER, "## `stxbench`", ""]
    for paragraph in _paragraphs(root.help or ""):
        lines += [paragraph, ""]
    lines += [f"    stxbench {' '.join(root.collect_usage_pieces(ctx))}", "", "Options:", ""]
    lines += [_param_line(record) for record in filter(None, (p.get_help_record(ctx) for p in root.get_params(ctx)))]
    lines += ["", "Commands: " + ", ".join(f"[`{name}`](#stxbench-{name})" for name in root.list_commands(ctx)) + ".", ""]
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        lines += _command_lines(command, command.context_class(command, info_name=name, parent=ctx), 2)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
