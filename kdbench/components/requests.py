"""What the engine asks a backbone to do, and what the backbone gives back.

One request object per backbone operation (:class:`TrainRequest`, :class:`ModelRequest`,
:class:`PredictRequest`, :class:`SynthesisRequest`), so an operation gains a field without
every backbone's signature changing.

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


@dataclass(frozen=True, kw_only=True)
class ModelRequest:
    """Load a finished training's model (frozen, in inference mode).

    Attributes:
        trained: the finished training (its checkpoint and the models it was built from).
        dataset: the prepared dataset it was trained on (``PreparedDataset``).
        options: the backbone's validated options.
        device: ``"cpu"`` or ``"cuda"``.
    """

    trained: TrainedModel
    dataset: Any  # kdbench.data.prepared.PreparedDataset
    options: Any
    device: str = "cpu"


@dataclass(frozen=True, kw_only=True)
class PredictRequest(ModelRequest):
    """Predict ``case_ids`` from the channels of ``available`` into ``out_dir``.

    Attributes:
        case_ids: the prepared cases to predict (a split's test cases).
        available: the modalities the model reads (one evaluated subset).
        out_dir: where one NIfTI file per case is written.
    """

    case_ids: tuple[str, ...]
    available: tuple[str, ...]
    out_dir: Path


@dataclass(frozen=True, kw_only=True)
class SynthesisRequest(ModelRequest):
    """A finished generator's synthesised channels for ``case_ids``.

    Attributes:
        case_ids: the prepared cases to synthesise (a split's test cases).
    """

    case_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ExportRequest(ModelRequest):
    """Write a finished training into a model folder that needs neither ``runs/`` nor the
    prepared dataset (``kdbench export``).

    Attributes:
        dest: an empty folder owned by the backbone: its weights (of the model and of every
            model it was built from, in :attr:`TrainedModel.dependencies` order), and what its
            preprocessing and inference need.
    """

    dest: Path


@dataclass(frozen=True, kw_only=True)
class ExportedPredictRequest:
    """Predict new cases from their image files with an exported model (``kdbench predict``).

    Attributes:
        folder: the exported backbone folder (what :meth:`Backbone.export` wrote; its
            checksums already verified).
        trained: the model tree, each node's ``checkpoint`` a weights file in ``folder``.
        cases: case id -> modality -> image file; every case has the ``available`` files.
        available: the modalities the model reads (one subset it was scored on).
        out_dir: where ``<case>.nii.gz`` is written, in the case's own geometry.
        label_convention: the label values to write (a key of ``kdbench.cases.LABEL_MAPS``).
        device: ``"cpu"`` or ``"cuda"``.
        progress: called with each case id once it is written.
    """

    folder: Path
    trained: TrainedModel
    cases: dict[str, dict[str, Path]]
    available: tuple[str, ...]
    out_dir: Path
    label_convention: str
    device: str = "cpu"
    progress: Callable[[str], None] | None = None
