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
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from stxbench.errors import UsageError
from stxbench.execution import Execution
from stxbench.provenance import sha256_file
from stxbench.record import atomic_write_text
from stxbench.runconfig import RunConfig

RUN_CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class CorruptCheckpoint(Exception):
    pass


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_state(path: Path, payload: dict[str, Any]) -> str:
    """torch.save ``payload`` atomically; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, tmp)
        digest = sha256_file(tmp)
        # The digest goes first: a crash between the two renames leaves a file whose digest
        # does not match, which is refused, never a wrong file that matches.
        atomic_write_text(_digest_path(path), digest + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def load_state(path: Path) -> dict[str, Any] | None:
    """The payload at ``path``; None if absent; `CorruptCheckpoint` if it fails its hash."""
    if not path.exists():
        return None
    digest = _digest_path(path)
    if not digest.exists():
        raise CorruptCheckpoint(f"{path} has no {digest.name}")
    if sha256_file(path) != digest.read_text().strip():
        raise CorruptCheckpoint(f"{path} does not match its sha256 (truncated or corrupted)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file that hashes right but does not unpickle safely
        raise CorruptCheckpoint(f"{path} cannot be loaded safely: {exc}") from None


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


# -- the dense cache ------------------------------------------------------------------------


def dense_checkpoint_path(config: RunConfig, execution: Execution = Execution()) -> Path:
    key = config.protocol.dense_key(config.seed, config.backend)
    variant = {k: v for k, v in (("precision", execution.precision), ("world_size", execution.world_size))
               if v != getattr(Execution, k)}
    if variant:  # bf16 or data-parallel training gives other weights than the default
        key = hashlib.sha256(f"{key}{sorted(variant.items())}".encode()).hexdigest()
    return config.cache_dir / "dense" / f"{config.protocol.name}-{key[:24]}.pt"


def dense_cached(path: Path) -> bool:
    """Whether the cache holds an intact dense model at ``path`` (present, matching its sha256):
    what a sweep asks before it plans a job to train it."""
    digest = _digest_path(path)
    return path.exists() and digest.exists() and sha256_file(path) == digest.read_text().strip()


@contextlib.contextmanager
def dense_lock(path: Path, warn: Callable[[str], None]) -> Iterator[None]:
    """Held while a process loads or trains the dense model at ``path``. A second process asking
    for the same dense model (two runs started by hand, two jobs of a sweep) waits until the
    first has saved it, then loads it: one dense model is never trained twice at once. The lock
    is an advisory ``flock`` on ``<path>.lock``, released by the kernel if its holder dies."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            warn(f"waiting for another process to finish training the dense model {path.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_dense(path: Path, model: torch.nn.Module, warn) -> bool:
    """Load a cached dense model if it is present and intact; a corrupted one is retrained."""
    try:
        state = load_state(path)
    except CorruptCheckpoint as exc:
        warn(f"cached dense checkpoint: {exc}; retraining it")
        return False
    if state is None:
        return False
    model.load_state_dict(state)
    return True


def save_dense(path: Path, model: torch.nn.Module) -> None:
    save_state(path, cpu_state(model))


# -- the run checkpoint ---------------------------------------------------------------------


def run_fingerprint(config: RunConfig) -> str:
    """What a checkpoint must have been written by to be resumed by this run."""
    fields = {
        "protocol": config.protocol_sha256, "neuron": config.neuron, "pruner": config.pruner,
        "pruner_params": config.pruner_params, "backend": config.backend, "seed": config.seed,
        "device": config.device.split(":")[0], "precision": config.precision,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def run_checkpoint_path(config: RunConfig) -> Path:
    return config.out_dir / RUN_CHECKPOINT


def load_run_checkpoint(config: RunConfig) -> dict[str, Any] | None:
    """The checkpoint in ``--out`` this run should resume from, or None. A corrupted one, or one
    written by a different run, is refused with one line."""
    path = run_checkpoint_path(config)
    try:
        state = load_state(path)
    except CorruptCheckpoint as exc:
        raise UsageError(f"{exc}; delete it to start the run over") from None
    if state is None:
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != run_fingerprint(config):
        described = state.get("describes", "another run")
        raise UsageError(
            f"{path} is the checkpoint of another run ({described}); resume it with the same "
            "options, or choose another --out"
        )
    return state


def save_run_checkpoint(config: RunConfig, stage: str, model: torch.nn.Module,
                        progress: dict[str, Any], done: dict[str, Any]) -> None:
    """``progress``: the stage's `StageProgress` as a dict; ``done``: results of finished stages
    (timings, accuracies) that the record needs."""
    describes = (f"{config.protocol.name} {config.neuron}/{config.pruner}/{config.backend} "
                 f"seed {config.seed}")
    save_state(run_checkpoint_path(config), {
        "format": CHECKPOINT_FORMAT, "fingerprint": run_fingerprint(config), "describes": describes,
        "stage": stage, "model": cpu_state(model), "progress": progress, "done": done,
    })


def remove_run_checkpoint(config: RunConfig) -> None:
    path = run_checkpoint_path(config)
    path.unlink(missing_ok=True)
    _digest_path(path).unlink(missing_ok=True)
