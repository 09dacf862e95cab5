"""Code identity: the code that can change a run's numbers, hashed so that only what Python
executes counts.

A record holds one digest per package on its run's path (``provenance.code``): ``stxbench`` for
the core modules that compute numbers (`NUMBERS_PATH`), and one for each plugin package the run
used. A digest is the sha256 of each file's *normalized syntax tree*: the parsed module with its
docstrings and free-standing strings removed, dumped without line numbers. Comments, docstrings,
blank lines and formatting change no digest; a changed constant, operator, call or default does.
An entry is stale exactly when one of its digests differs from the installed code's, and the
dense cache and resumes are keyed by the same digests.

The core is split by what a module does, not by what it imports: `NUMBERS_PATH` lists the
modules that train, prune, count, price or store the numbers; `PRESENTATION` those that only
parse options, print, plan or check (the CLI, the leaderboard, the executors, error types).
Every core module is in exactly one list (a test holds it), so a new module is a decision.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from types import ModuleType

import stxbench

#: core modules and folders (relative to the package) whose code can change a run's numbers
NUMBERS_PATH = (
    "api.py",
    "data/augment/", "data/contract.py", "data/files.py", "data/splits.py",
    "measure/conventions.py", "measure/counting.py", "measure/energy.py", "measure/metrics.py",
    "measure/op_rules.py", "measure/recovery.py",
    "models/",
    "neurons/compile.py", "neurons/contract.py", "neurons/families.py", "neurons/kernel_cache.py", "neurons/lif.py",
    "neurons/site.py",
    "record/assemble.py", "record/schema.py",
    "run/baselines.py", "run/checkpoints.py", "run/config.py", "run/context.py", "run/cpu_pin.py", "run/processes.py", "run/protocol.py",
    "run/resolve.py", "run/stages.py", "run/training.py",
)
#: core modules and folders that parse, print, plan or check, and compute no number of a run
PRESENTATION = (
    "__init__.py", "__main__.py", "cli/", "executors/", "host/", "leaderboard/",
    "data/__init__.py", "measure/__init__.py", "neurons/__init__.py", "record/__init__.py", "run/__init__.py",
    "measure/diagnostics.py",
    "neurons/parity.py",
    "record/code_identity.py", "record/provenance.py", "record/run_identity.py",
    "run/errors.py", "run/failures.py", "run/paths.py", "run/signals.py", "run/torchrun.py",
)

CORE = "stxbench"


def _is_string_statement(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def normalized_tree(source: str) -> str:
    """The module's syntax tree without docstrings and free-standing strings, without positions."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            kept = [stmt for stmt in body if not _is_string_statement(stmt)]
            node.body = kept or [ast.Pass()]  # a body of only a docstring is the same as `pass`
    return ast.dump(tree, include_attributes=False)


def file_digest(path: Path) -> str:
    """sha256 of a file's normalized syntax tree (of its bytes where it does not parse)."""
    stat = path.stat()
    return _file_digest(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:  # parsed once per version of a file
    raw = path.read_bytes()
    try:
        return hashlib.sha256(normalized_tree(raw.decode("utf-8")).encode()).hexdigest()
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return hashlib.sha256(raw).hexdigest()


def files_digest(files: dict[str, Path]) -> str:
    """One digest over named files (name and normalized tree of each, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + file_digest(files[name]).encode() + b"\0")
    return digest.hexdigest()


def _core_root() -> Path:
    return Path(stxbench.__file__).resolve().parent


def core_files(entries: tuple[str, ...] = NUMBERS_PATH) -> dict[str, Path]:
    """The core's files named by ``entries`` (a module file, or a folder ending in ``/``)."""
    root = _core_root()
    found: dict[str, Path] = {}
    for entry in entries:
        paths = sorted((root / entry).rglob("*.py")) if entry.endswith("/") else [root / entry]
        for path in paths:
            if "__pycache__" not in path.parts and path.is_file():
                found[path.relative_to(root).as_posix()] = path
    return found


def core_digest() -> str:
    return files_digest(core_files())


def plugin_files(module: ModuleType | None) -> list[Path]:
    """The source files of a plugin: its package's ``.py`` files, or its single module file.
    Every reader of a plugin's files (the code identity, the raw hashes a record keeps, the
    host naming the plugin a traceback or a file belongs to) finds them here."""
    path = getattr(module, "__file__", None)
    if not path:
        return []
    path = Path(path)
    if path.name == "__init__.py":
        return sorted(p for p in path.parent.rglob("*.py") if "__pycache__" not in p.parts)
    return [path]


def package_files(module: ModuleType | None) -> dict[str, Path]:
    """A plugin's source files by name relative to its package (or its one module's name)."""
    files = [p.resolve() for p in plugin_files(module)]
    if len(files) == 1 and files[0].name != "__init__.py":
        return {files[0].name: files[0]}
    root = Path(module.__file__).resolve().parent if files else None
    return {p.relative_to(root).as_posix(): p for p in files}


def raw_sha256(modules: list[ModuleType | None]) -> dict[str, str]:
    """sha256 of the bytes of every source file of the plugins that define ``modules``, keyed
    ``<package>/<relative path>`` (``<module>.py`` for a one-file plugin): what a record keeps
    for a reader as ``provenance.plugin_sha256`` (staleness reads the code identity)."""
    out: dict[str, str] = {}
    for module in modules:
        files = plugin_files(module)
        if not files:
            continue
        root = files[0].parent if files[0].name != "__init__.py" else files[0].parent.parent
        out.update({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    return dict(sorted(out.items()))


def package_name(module: ModuleType) -> str:
    return module.__name__.partition(".")[0]


def code_identity(modules: list[ModuleType | None]) -> dict[str, str]:
    """``{"stxbench": core digest, <plugin package>: digest, ...}`` for a run that used the
    plugins defined in ``modules``."""
    identity = {CORE: core_digest()}
    for module in modules:  # a package that gave several components: its digest once
        if module is not None and package_name(module) not in identity:
            identity[package_name(module)] = installed_identity(module)
    return dict(sorted(identity.items()))


def installed_identity(module: ModuleType) -> str:
    return files_digest(package_files(module))
