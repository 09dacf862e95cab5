"""The recovery curve and neuron diagnostics of one run, measured on the protocol's validation
split (``[data.validation]``, carved from the training set by `stxbench.data.splits.carve_validation`).

A run with a validation split measures, on rank 0:

* before pruning: the dense model's validation accuracy and the per-layer diagnostics;
* right after pruning and the swap to the run's neuron (epoch 0 of the curve), and after every
  fine-tune epoch: the validation accuracy, with the epoch's mean training loss;
* after fine-tuning: the diagnostics again.

Everything measured is kept in the run's ``done`` dictionary, which every run checkpoint saves,
so a resumed run keeps the points measured before it stopped. Validation passes use no random
numbers, so they change nothing in training; their time is kept apart (``timing.validation_s``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from stxbench.data.contract import DataSplits
from stxbench.measure.diagnostics import neuron_diagnostics
from stxbench.run.processes import Execution
from stxbench.models.base import SpikingModel
from stxbench.record.schema import CurvePoint, Diagnostics, NeuronDiagnostic, Recovery
from stxbench.run.training import dataset_head, evaluate


@dataclass
class RecoveryProbe:
    splits: DataSplits
    validation: torch.utils.data.Dataset
    diagnostic_samples: int
    batch_size: int
    device: torch.device
    execution: Execution
    #: the run's record of finished work (saved in every checkpoint); this probe keeps its
    #: measurements under ``done["recovery"]`` and its seconds under ``done["validation_s"]``
    done: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        return self.done.setdefault("recovery", {})

    def _timed(self, measure):
        start = time.perf_counter()
        try:
            return measure()
        finally:
            self.done["validation_s"] = self.done.get("validation_s", 0.0) + time.perf_counter() - start

    def accuracy(self, model: SpikingModel) -> float:
        return evaluate(model, self.splits, self.batch_size, self.device, self.execution,
                        dataset=self.validation).accuracy

    def diagnostics(self, model: SpikingModel) -> dict[str, dict[str, float]]:
        x, y = next(iter(torch.utils.data.DataLoader(
            dataset_head(self.validation, self.diagnostic_samples), batch_size=self.diagnostic_samples)))
        x = x.to(self.device)
        x = self.splits.prepare(x) if self.splits.prepare else x
        found = neuron_diagnostics(model, x, y.to(self.device))
        return {name: d.model_dump() for name, d in found.items()}

    # -- the moments of a run ------------------------------------------------------------

    def before_pruning(self, model: SpikingModel) -> None:
        if "accuracy_dense" in self.state:
            return  # measured before the run was interrupted (a resumed run)
        self._timed(lambda: self.state.update(accuracy_dense=self.accuracy(model),
                                              dense=self.diagnostics(model)))

    def after_pruning(self, model: SpikingModel) -> None:
        if "curve" in self.state:
            return  # a resumed run: epoch 0 and the pruned diagnostics are in its checkpoint
        self._timed(lambda: self.state.update(
            curve=[{"epoch": 0, "accuracy": self.accuracy(model), "loss": None}],
            pruned=self.diagnostics(model)))

    def measurer(self, model: SpikingModel):
        """The fine-tune stage's `StageHooks.measure`: after each epoch, one point of the curve."""

        def measure(epoch: int, values: dict[str, float]) -> dict[str, float]:
            accuracy = self._timed(lambda: self.accuracy(model))
            self.state["curve"].append({"epoch": epoch, "accuracy": accuracy, "loss": values["loss"]})
            return {"val_accuracy": accuracy}

        return measure

    def after_finetuning(self, model: SpikingModel) -> None:
        self._timed(lambda: self.state.update(finetuned=self.diagnostics(model)))

    def result(self) -> Recovery:
        s = self.state
        return Recovery(
            validation_samples=len(self.validation),
            accuracy_dense=s["accuracy_dense"],
            curve=[CurvePoint(**point) for point in s["curve"]],
            diagnostics=Diagnostics(
                samples=min(self.diagnostic_samples, len(self.validation)),
                **{moment: {name: NeuronDiagnostic(**d) for name, d in s[moment].items()}
                   for moment in ("dense", "pruned", "finetuned")},
            ),
        )
