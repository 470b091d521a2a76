"""What the engine asks a backbone to do, and what the backbone gives back.

These dataclasses are the whole interface between the core (which knows Jobs, protocols and
splits) and a backbone plugin (which knows how to train and predict): the core never imports
nnU-Net, and the backbone never reads a protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.components.strategy import Strategy
from kdbench.types import Budget


@dataclass
class TrainedModel:
    """A finished training: the strategy that made it, its final checkpoint, and the finished
    models it was built from (role -> model), which loading it rebuilds first."""

    strategy: Strategy
    checkpoint: Path
    dependencies: dict[str, TrainedModel] = field(default_factory=dict)


@dataclass
class TrainRequest:
    """Train ``strategy`` on the (N, seed) subset of a prepared dataset.

    Attributes:
        strategy: the strategy instance (hyper-parameters and modalities of the Job).
        dataset: the prepared dataset (every case preprocessed once, four channels).
        train_cases: training cases of the subset.
        val_cases: validation cases of the subset (early stopping, pruning; never a test case).
        budget: epochs, iterations, validation and checkpoint frequency.
        options: the backbone's validated options.
        output_dir: the Job's folder; a checkpoint there is resumed from.
        seed: seeds every random number generator before the network is built.
        device: ``"cpu"`` or ``"cuda"``.
        teacher: the finished teacher Job's model, for strategies that require one.
        generator: the finished generator Job's model, for strategies that require one.
        unlabelled_cases: cases read without labels (:meth:`Strategy.unlabelled_cases`).
        callbacks: called with the epoch report every ``validate_every`` epochs.
        compile: ``torch.compile`` the trainable model (CUDA only; cost paid once per Job).
        data_workers: data-augmentation worker processes (0: in the main process,
            deterministic).
    """

    strategy: Strategy
    dataset: Any  # kdbench.data.prepared.PreparedDataset
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    budget: Budget
    options: Any
    output_dir: Path
    seed: int
    device: str = "cpu"
    teacher: TrainedModel | None = None
    generator: TrainedModel | None = None
    unlabelled_cases: tuple[str, ...] = ()
    callbacks: list[Callable[[Any], None]] = field(default_factory=list)
    compile: bool = False
    data_workers: int = 0


@dataclass
class TrainResult:
    """What a training produced."""

    checkpoint: Path
    epochs: int
    resumed_from_epoch: int | None
    history: dict[str, list[Any]]
