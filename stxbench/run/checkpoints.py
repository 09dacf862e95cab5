"""Checkpoints: the dense-model cache and the per-run checkpoint that makes runs resumable.

Both are written atomically (temporary file + rename) with a sha256 sidecar, and read back only
through `torch.load(weights_only=True)` after the hash matches: a truncated or corrupted file is
never loaded silently. A corrupted cache entry is rebuilt (it is only a cache); a corrupted run
checkpoint is refused (it holds work the user may want to inspect).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from stxbench.run.errors import UsageError, one_line
from stxbench.record.schema import atomic_write_text
from stxbench.record.run_identity import RunIdentity
from stxbench.run.config import RunConfig

RUN_CHECKPOINT = "checkpoint.pt"
#: 2: the checkpoint records how its run executed (threads, device, processes, code)
CHECKPOINT_FORMAT = 2


class CorruptCheckpoint(Exception):
    pass


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_state(path: Path, payload: dict[str, Any]) -> str:
    """torch.save ``payload`` atomically; returns the file's sha256. Saved through memory, so
    the bytes (and the sha256 records carry) depend on the payload alone: saved to a path,
    torch names the archive inside after the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        tmp.write_bytes(data)
        # The digest goes first: a crash between the two renames leaves a file whose digest
        # does not match, which is refused, never a wrong file that matches.
        atomic_write_text(_digest_path(path), digest + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


#: the largest checkpoint read back (a model of the GPU protocols with its optimizer state is
#: a few hundred MB): a larger file is refused before it is read into memory
MAX_CHECKPOINT_BYTES = 4 << 30
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def load_state(path: Path, limit: int = MAX_CHECKPOINT_BYTES) -> tuple[dict[str, Any], str] | None:
    """The payload at ``path`` and the sha256 of the bytes it was read from (read once, so the
    hash is that of what was loaded even if another process replaces the file meanwhile); None
    if absent; `CorruptCheckpoint` if it fails its hash or is not a checkpoint. Its size and
    first bytes are checked before it is read: a file larger than ``limit``, or that is not a
    torch archive, is never read whole."""
    if not path.exists():
        return None
    digest_path = _digest_path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise CorruptCheckpoint(f"{path} is {size / 1e6:,.0f} MB, more than a checkpoint of this "
                                    f"run can be ({limit / 1e6:,.0f} MB)")
        with open(path, "rb") as fh:
            if fh.read(4) != ZIP_MAGIC:
                raise CorruptCheckpoint(f"{path} is not a torch checkpoint (no zip archive)")
            data = ZIP_MAGIC + fh.read(limit)
        with open(digest_path, "rb") as fh:
            expected = fh.read(256).decode("ascii", "replace").strip()
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path} has no {digest_path.name}") from None
    except OSError as exc:
        raise CorruptCheckpoint(f"{path} cannot be read: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise CorruptCheckpoint(f"{path} does not match its sha256 (truncated or corrupted)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a file that hashes right but does not unpickle safely
        raise CorruptCheckpoint(f"{path} cannot be loaded safely: {one_line(exc)}") from None
    if not isinstance(payload, dict):
        raise CorruptCheckpoint(f"{path} holds a {type(payload).__name__}, not a checkpoint")
    return payload, digest


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def misfit(model: torch.nn.Module, state: Any) -> str | None:
    """Why ``state`` cannot be loaded into ``model`` exactly (keys, shapes, dtypes), or None.
    Checked before loading: `load_state_dict` copies what fits before it complains."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not the model's weights"
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"it lacks the model's {missing[0]}{more}"
    if unexpected:
        return f"it holds {unexpected[0]}, which the model does not have"
    for key, tensor in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            return f"its {key} is a {type(value).__name__}, not a tensor"
        if value.shape != tensor.shape or value.dtype != tensor.dtype:
            return (f"its {key} is {tuple(value.shape)} {value.dtype}, the model's is "
                    f"{tuple(tensor.shape)} {tensor.dtype}")
    return None


# -- the dense cache ------------------------------------------------------------------------


def dense_checkpoint_path(config: RunConfig, identity: RunIdentity) -> Path:
    """The cache file of the dense model: keyed by `RunIdentity.dense_key`, the protocol's stage
    1, the seed and the backend, and everything else that changes the trained weights (threads,
    device, precision, processes, library versions, the code of stxbench and of the plugins
    stage 1 uses): a cached model is only ever the one this run would have trained."""
    return config.cache_dir / "dense" / f"{config.protocol.name}-{identity.dense_key()[:24]}.pt"


def dense_cached(path: Path) -> bool:
    """Whether the cache holds an intact dense model at ``path`` (present, matching its sha256):
    what a sweep asks before it plans a job to train it."""
    digest = _digest_path(path)
    if not (path.exists() and digest.exists()):
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == digest.read_text().strip()


@contextlib.contextmanager
def dense_lock(path: Path, warn: Callable[[str], None]) -> Iterator[None]:
    """Held while a process loads or trains the dense model at ``path``. A second process asking
    for the same dense model (two runs started by hand, two jobs of a sweep) waits until the
    first has saved it, then loads it: one dense model is never trained twice at once. The lock
    is an advisory ``flock`` on ``<path>.lock``, released by the kernel if its holder dies. The
    holder removes the lock file (and the cache folders it made, if left empty) when it is done,
    so a run that fails leaves nothing behind; a waiter that finds its file removed takes anew."""
    lock = path.with_name(path.name + ".lock")
    made = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]
    lock.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        handle = open(lock, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not waited:
                warn(f"waiting for {lock_holder(lock)} to finish training the dense model {path.name} "
                     f"in the cache {path.parent.parent} (shared by every run using it; to use another: "
                     "--cache-dir DIR)")
                waited = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                break  # still the lock file: ours
        handle.close()  # its holder removed it on release: lock the new one
    with contextlib.suppress(OSError):  # who holds it, for the message of those who wait
        handle.truncate(0)
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        handle.flush()
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while held: nobody else holds this inode
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        for folder in made:  # innermost first; only those this call made, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()


def lock_holder(lock: Path) -> str:
    """The process holding a dense lock, as its file records it: ``process 4242 on host``."""
    try:
        with open(lock, "rb") as fh:
            pid, _, host = fh.read(300).decode("utf-8", "replace").strip().partition(" ")
    except OSError:
        pid, host = "", ""
    if not pid.isdigit():
        return "another process"
    here = socket.gethostname()
    return f"process {pid}" + (f" on {host}" if host and host != here else " on this machine")


def load_dense(path: Path, model: torch.nn.Module, warn) -> str | None:
    """Load a cached dense model if it is present, intact and fits ``model``; returns the sha256
    of what was loaded. A corrupted entry, or one that does not fit, is retrained (warned); an
    entry that is a folder cannot be replaced, and is refused."""
    if path.is_dir():
        raise UsageError(f"the dense-model cache entry {path} is a folder, not a cached model: remove "
                         f"it, or use another cache (--cache-dir DIR)")
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    try:
        loaded = load_state(path, limit=2 * weights + (64 << 20))
    except CorruptCheckpoint as exc:
        warn(f"cached dense checkpoint: {exc}; retraining it")
        return None
    if loaded is None:
        return None
    state, digest = loaded
    problem = misfit(model, state)
    if problem is not None:
        warn(f"cached dense checkpoint {path} does not fit the model ({problem}); retraining it")
        return None
    model.load_state_dict(state)
    return digest


def save_dense(path: Path, model: torch.nn.Module) -> str:
    """Cache the dense model; returns its file's sha256."""
    return save_state(path, cpu_state(model))


# -- the run checkpoint ---------------------------------------------------------------------


def run_fingerprint(config: RunConfig, identity: RunIdentity) -> str:
    """What a checkpoint must have been written by to be resumed by this run."""
    fields = {
        "protocol": identity.protocol.sha256, "neuron": config.neuron, "pruner": config.pruner,
        "pruner_params": config.pruner_params, "backend": config.backend, "seed": config.seed,
        "precision": identity.numerics.precision,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def run_checkpoint_path(config: RunConfig) -> Path:
    return config.out_dir / RUN_CHECKPOINT


def _other_execution(path: Path, theirs: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """How the checkpoint's run executed differently from this one, as the refusal says it."""
    if theirs.get("code") != ours["code"]:
        return (f"{path} was written by other code (stxbench or plugin files changed since); "
                "delete it to start the run over, or choose another --out")
    if theirs.get("device") != ours["device"]:
        return (f"{path} was written on {theirs.get('device')}, this run is on {ours['device']}: "
                "resume it there (another device gives other numbers), or choose another --out")
    if theirs.get("threads") != ours["threads"]:
        return (f"{path} was written by a run with {theirs.get('threads')} thread(s), this run has "
                f"{ours['threads']}: resume with --threads {theirs.get('threads')} (other threads give "
                "other numbers), or choose another --out")
    if theirs.get("world_size") != ours["world_size"]:
        return (f"{path} was written by {theirs.get('world_size')} process(es), this run has "
                f"{ours['world_size']}: resume with the same --nproc, or choose another --out")
    if theirs.get("compile") != ours["compile"]:
        how = {True: "compiled", False: "eager"}
        flag = "--compile" if theirs.get("compile") else "--no-compile"
        return (f"{path} was written by a run with {how.get(theirs.get('compile'), 'unknown')} neurons, this "
                f"run's are {how[ours['compile']]}: resume with {flag} (compiled neurons may give other "
                "numbers), or choose another --out")
    return None


def load_run_checkpoint(config: RunConfig, identity: RunIdentity) -> dict[str, Any] | None:
    """The checkpoint in ``--out`` this run should resume from, or None. A corrupted one, one
    written by a different run, or by this run executing differently (`RunIdentity.resume_key`:
    threads, device, processes, compiled neurons, code), is refused with one line."""
    path = run_checkpoint_path(config)
    try:
        loaded = load_state(path)
    except CorruptCheckpoint as exc:
        raise UsageError(f"{exc}; delete it to start the run over") from None
    if loaded is None:
        return None
    state = loaded[0]
    if state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path} was written by another version of stxbench (checkpoint format "
                         f"{state.get('format')!r}, this one reads {CHECKPOINT_FORMAT}); delete it to "
                         "start the run over, or choose another --out")
    if state.get("fingerprint") != run_fingerprint(config, identity):
        described = state.get("describes", "another run")
        raise UsageError(
            f"{path} is the checkpoint of another run ({described}); resume it with the same "
            "options, or choose another --out"
        )
    problem = _other_execution(path, state.get("execution") or {}, identity.resume_key())
    if problem:
        raise UsageError(problem)
    return state


def save_run_checkpoint(config: RunConfig, identity: RunIdentity, stage: str, model: torch.nn.Module,
                        progress: dict[str, Any], done: dict[str, Any]) -> None:
    """``identity``: how this run executes (`load_run_checkpoint` compares its `resume_key`); ``progress``:
    the stage's `StageState.progress`; ``done``: results of finished stages (timings,
    accuracies, the dense model's sha256) that the record needs."""
    describes = (f"{config.protocol.name} {config.neuron}/{config.pruner}/{config.backend} "
                 f"seed {config.seed}")
    save_state(run_checkpoint_path(config), {
        "format": CHECKPOINT_FORMAT, "fingerprint": run_fingerprint(config, identity), "describes": describes,
        "execution": identity.resume_key(), "stage": stage, "model": cpu_state(model), "progress": progress,
        "done": done,
    })


def remove_run_checkpoint(config: RunConfig) -> None:
    path = run_checkpoint_path(config)
    path.unlink(missing_ok=True)
    _digest_path(path).unlink(missing_ok=True)
