"""How a run fails: every way it can stop, turned into one line for the user (`RunInterrupted`,
`RunFailed`), with the plugin to blame named where plugin code raised."""

from __future__ import annotations

import contextlib
import errno
import traceback
from collections.abc import Iterator
from pathlib import Path

import torch

from stxbench.run.errors import RunFailed, RunInterrupted, UsageError, one_line
from stxbench.host.plugin_host import PluginHost
from stxbench.models.base import NeuronOutputError
from stxbench.run.config import RunConfig
from stxbench.run.signals import SignalInterrupt


@contextlib.contextmanager
def failures_explained(config: RunConfig, host: PluginHost, last: list[str]) -> Iterator[None]:
    """Ctrl-C, SIGTERM and CUDA out-of-memory as `RunInterrupted` (the last checkpoint named),
    whatever plugin code raises (``sys.exit()`` included) as `RunFailed` naming the plugin, a
    neuron module breaking the neuron contract blamed on its plugin; a bug in stxbench itself
    keeps its traceback."""
    try:
        yield
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (`stxbench.run.signals`), or plugin code
        stop = exc if isinstance(exc, SignalInterrupt) else SignalInterrupt()
        raise RunInterrupted(stop.reason, config.out_dir, last[0] if last else None,
                             exit_code=stop.exit_code) from None
    except torch.cuda.OutOfMemoryError:
        raise RunInterrupted(
            f"CUDA out of memory (train batch {config.protocol.train.batch_size}, fine-tune batch "
            f"{config.protocol.finetune.batch_size}): free the GPU or lower the batch size "
            "(--set train.batch_size=..., which makes the run unofficial)",
            config.out_dir, last[0] if last else None, exit_code=1,
        ) from None
    except NeuronOutputError as exc:  # blamed on the plugin whose file holds the module
        owner = (exc.source and host.owner(exc.source)) or host.get("backend", config.backend)
        raise RunFailed(f"{owner.kind} '{owner.name}' (plugin '{owner.plugin}'): {exc}") from None
    except (UsageError, RunFailed):
        raise
    except BaseException as exc:  # sys.exit() and other BaseExceptions of plugin code included
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # a full disk (or quota): every file is written atomically, so the last checkpoint
            # is intact and the run resumes exactly once there is room
            where = f" writing {exc.filename}" if exc.filename else ""
            raise RunInterrupted(f"no space left on the device{where}: free some space (or use "
                                 "another --out / --cache-dir)", config.out_dir, last[0] if last else None,
                                 exit_code=1) from None
        culprit = host.blame(exc)
        if culprit is not None:
            raise RunFailed(culprit) from None
        if isinstance(exc, SystemExit) and _raised_by("submitit", exc):
            raise  # SLURM's time limit: submitit requeued the job and exits (stxbench.executors)
        if not isinstance(exc, Exception):  # whoever raised it, a run does not end with exit code 0
            raise RunFailed(f"the run was stopped by {one_line(exc)}{_where(exc)}") from None
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
            raise RunFailed(f"out of memory: {one_line(exc)[:200]}; lower the batch size or the model "
                            "size (--set ..., which makes the run unofficial)") from None
        raise  # a bug in stxbench itself: keep the traceback


def _raised_by(package: str, exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and f"/{package}/" in frames[-1].filename.replace("\\", "/")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
