"""How the end-to-end benchmark (``e2e_benchmark.py``) times training iterations: kdbench's
and nnU-Net's trainers on the same preprocessed data, their loaders with W workers, and timed
rounds (interleaved when several variants share a loop).

torch, nnunetv2 and kdbench's trainer are imported inside the functions, after the benchmark
has put the checkout on the path (``bench_setup.import_checkout``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench_setup import CONFIGURATION


def _quiet() -> contextlib.AbstractContextManager[Any]:
    return contextlib.redirect_stdout(io.StringIO())


def kdbench_trainer(plans: dict[str, Any], dataset_json: dict[str, Any], device: Any,
                    train: Sequence[str], val: Sequence[str], seed: int) -> Any:
    """``KdbenchTrainer`` for ``multi`` (4 channels) with ``augmentation: gpu``, initialised
    (one epoch of one iteration: the benchmark calls ``train_step`` itself)."""
    import torch

    from kdbench.modalities import MODALITIES
    from kdbench_plugins.multi import Multi
    from kdbench_plugins.nnunet_backbone.trainer import KdbenchTrainer, TrainerSettings

    with _quiet():
        trainer = KdbenchTrainer({**copy.deepcopy(plans), "continue_training": False},
                                 CONFIGURATION, 0, dataset_json, device)
        trainer.configure(TrainerSettings(
            strategy=Multi(Multi.resolve_hparams(), Multi.teacher_use(MODALITIES)),
            train_cases=train, val_cases=val, epochs=1, iterations_per_epoch=1,
            val_iterations=1, augmentation="gpu"))
        torch.manual_seed(seed)
        trainer.initialize()
    return trainer


def nnunet_trainer(plans: dict[str, Any], dataset_json: dict[str, Any], device: Any,
                   train: Sequence[str], val: Sequence[str], seed: int) -> Any:
    """nnU-Net's own ``nnUNetTrainer`` on the same split, initialised."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    with _quiet():
        trainer = nnUNetTrainer({**copy.deepcopy(plans), "continue_training": False},
                                CONFIGURATION, 0, dataset_json, device)
        trainer.do_split = lambda: (list(train), list(val))
        torch.manual_seed(seed)
        trainer.initialize()
    return trainer


@contextlib.contextmanager
def loaders(trainer: Any, workers: int) -> Iterator[Any]:
    """The trainer's training loader with ``workers`` processes (nnU-Net's
    ``nnUNet_n_proc_DA``), its network in training mode; both loaders stopped on exit."""
    os.environ["nnUNet_n_proc_DA"] = str(workers)  # noqa: SIM112 - nnU-Net's name
    with _quiet():
        train_loader, val_loader = trainer.get_dataloaders()
    trainer.network.train()
    try:
        yield train_loader
    finally:
        for loader in (train_loader, val_loader):
            finish = getattr(loader, "_finish", None)
            if finish is not None:
                finish()


class Timings:
    """The step times of each variant on one device: ``times`` (the timed rounds, seconds),
    ``first`` (the first warm-up step), ``peak`` (MiB allocated on CUDA, else None)."""

    def __init__(self, device: Any, warmup: int, steps: int) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.warmup, self.steps = warmup, steps
        self.times: dict[str, list[float]] = {}
        self.first: dict[str, float] = {}
        self.peak: dict[str, float | None] = {}

    def timed(self, step: Callable[[], Any]) -> float:
        """Seconds ``step`` takes (the device synchronised before and after)."""
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)
        begin = time.perf_counter()
        step()
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - begin

    def measure(self, names: tuple[str, ...], steps: dict[str, Callable[[], Any]]) -> None:
        """Warm-up, then the timed steps, interleaved when several variants share a loop."""
        import torch

        for name in names:
            self.times[name] = []
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
        for round_ in range(max(self.warmup, 1)):
            for name in names:
                elapsed = self.timed(steps[name])
                if round_ == 0:
                    self.first[name] = elapsed
        for _ in range(self.steps):
            for name in names:
                self.times[name].append(self.timed(steps[name]))
        for name in names:
            self.peak[name] = (torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda
                               else None)
