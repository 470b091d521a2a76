"""One nnU-Net trainer for every strategy: the strategy is a component the trainer calls.

``KdbenchTrainer`` keeps nnU-Net's recipe — its data loader with foreground oversampling, its
augmentation pipeline, Dice + BCE on the deep-supervision outputs of region-based sigmoid
heads, SGD with Nesterov momentum 0.99 and the poly schedule, gradient clipping at 12, AMP with
a GradScaler on CUDA, its validation pseudo-Dice and checkpoints — by subclassing
``nnUNetTrainer`` once and changing only what composition needs:

- the networks come from the strategy (``Strategy.build``), built with nnU-Net's own
  ``build_network_architecture`` for any number of input channels;
- the loss of a training batch is the strategy's (``Strategy.training_loss`` of a
  ``TrainingStep``), computed inside nnU-Net's own ``train_step``;
- the split is kdbench's (N, seed) subset, not nnU-Net's folds;
- checkpoints are written atomically and carry the random states, so that a Job killed
  mid-training resumes to the same final state as an uninterrupted run
  (:mod:`.trainer_checkpoints`);
- with ``augmentation: gpu`` the loader's workers only load and crop, and each training batch
  is augmented on the device (:mod:`.trainer_augmentation`);
- validation Dice goes to callbacks (logging, pruning) every ``validate_every`` epochs.

Never one subclass per strategy: variation is the strategy object, not the trainer class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from kdbench import BuildContext, StepBatch, Strategy, TrainingStep
from kdbench.modalities import MODALITIES, channel_indices
from kdbench.types import EpochReport
from kdbench_plugins.nnunet_backbone.networks import network_builder
from kdbench_plugins.nnunet_backbone.trainer_augmentation import DeviceAugmentation
from kdbench_plugins.nnunet_backbone.trainer_checkpoints import ResumableCheckpoints

CHECKPOINT_LATEST = "checkpoint_latest.pth"
CHECKPOINT_FINAL = "checkpoint_final.pth"


@dataclass
class TrainerSettings:
    """What kdbench sets on nnU-Net's trainer for one Job."""

    strategy: Strategy
    train_cases: Sequence[str]
    val_cases: Sequence[str]
    epochs: int
    iterations_per_epoch: int
    val_iterations: int
    validate_every: int = 1
    checkpoint_every: int = 1
    compile: bool = False
    #: with ``compile`` on CUDA, also compile the frozen teacher (in place, paid once per Job)
    compile_teacher: bool = True
    teacher: torch.nn.Module | None = None
    teacher_modalities: tuple[str, ...] = ()
    generator: torch.nn.Module | None = None
    dependencies: dict[str, Any] = field(default_factory=dict)
    unlabelled_cases: tuple[str, ...] = ()
    initial_lr: float | None = None
    training_modalities: tuple[str, ...] = MODALITIES
    callbacks: list[Callable[[EpochReport], None]] = field(default_factory=list)
    #: ``nnunet``: nnU-Net's augmentation in its CPU workers; ``gpu``: the workers only load
    #: and crop, ``train_step`` augments the batch on the device (:mod:`.gpu_augment`).
    augmentation: str = "nnunet"


def compile_frozen(module: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """``torch.compile`` a frozen model in place (``nn.Module.compile``): the same object,
    type, attributes and state-dict keys, so strategies that read a teacher's weights or hook
    its encoder see no wrapper; it compiles at its first call, once per Job. A model already
    compiled is left as it is."""
    from torch._dynamo.eval_frame import OptimizedModule

    if isinstance(module, OptimizedModule) or \
            getattr(module, "_compiled_call_impl", None) is not None:
        return module
    module.compile(**options)
    return module


class KdbenchTrainer(ResumableCheckpoints, DeviceAugmentation, nnUNetTrainer):
    """nnU-Net's trainer driven by a kdbench strategy (see the module docstring).

    The constructor keeps nnU-Net's signature (nnU-Net records its arguments by introspection);
    call :meth:`configure` before :meth:`run_training`.
    """

    settings: TrainerSettings
    context: BuildContext

    def configure(self, settings: TrainerSettings) -> None:
        """Set the strategy, the (N, seed) subset and the budget."""
        self.settings = settings
        if settings.compile and settings.compile_teacher and settings.teacher is not None \
                and self.device.type == "cuda":
            compile_frozen(settings.teacher)
        self.num_epochs = settings.epochs
        self.num_iterations_per_epoch = settings.iterations_per_epoch
        self.num_val_iterations_per_epoch = settings.val_iterations
        self.save_every = settings.checkpoint_every
        if settings.initial_lr is not None:
            self.initial_lr = settings.initial_lr
        strategy = settings.strategy
        # The preprocessed arrays always hold the four canonical channels.
        self._input_idx = list(channel_indices(strategy.input_modalities()))
        self._privileged_idx = list(channel_indices(settings.training_modalities))
        self._train_terms: list[dict[str, float]] = []
        self.context = BuildContext(
            network=network_builder(self.plans_manager, self.configuration_manager,
                                    self.label_manager.num_segmentation_heads, self.device),
            supervised_loss=lambda outputs, target: self._supervised(outputs, target),
            num_outputs=self.label_manager.num_segmentation_heads,
            device=self.device,
            teacher=settings.teacher,
            teacher_modalities=settings.teacher_modalities,
            generator=settings.generator,
            dependencies=dict(settings.dependencies),
            patch_size=tuple(self.configuration_manager.patch_size),
        )
        self._unlabelled: Any = None
        if settings.augmentation not in ("nnunet", "gpu"):
            raise ValueError(f"augmentation must be 'nnunet' or 'gpu', got "
                             f"{settings.augmentation!r}")
        self._gpu_augment: Any = None

    # -- networks and loss ----------------------------------------------------------------------

    def build_network_architecture(self, plans_manager, configuration_manager,  # noqa: ANN001
                                   num_input_channels, num_output_channels,
                                   enable_deep_supervision=True) -> torch.nn.Module:
        """Called by nnU-Net's ``initialize``: the strategy builds the trainable model (kept
        unwrapped, as ``TrainingStep.model``, before nnU-Net compiles or distributes it)."""
        self._strategy_model = self.settings.strategy.build(self.context)
        return self._strategy_model

    def _supervised(self, outputs: Any, target: Any) -> torch.Tensor:
        return self._supervised_loss(outputs, target)

    def initialize(self) -> None:
        """nnU-Net's initialisation; keeps its loss as the supervised loss of strategies."""
        super().initialize()
        self._supervised_loss = self.loss
        weights = getattr(self.loss, "weight_factors", None)
        self.context.deep_supervision_weights = tuple(float(w) for w in weights or (1.0,))

    def _do_i_compile(self) -> bool:
        # nnU-Net compiles by default on CUDA; kdbench compiles only when asked (cost paid once).
        return bool(getattr(self, "settings", None) and self.settings.compile
                    and self.device.type == "cuda")

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """Switch deep supervision on every nnU-Net decoder in the strategy's model."""
        for module in self.network.modules():
            decoder = getattr(module, "decoder", None)
            if decoder is not None and hasattr(decoder, "deep_supervision"):
                decoder.deep_supervision = enabled

    # -- split ----------------------------------------------------------------------------------

    def do_split(self) -> tuple[list[str], list[str]]:
        """kdbench's (N, seed) training and validation cases (never a test case)."""
        return list(self.settings.train_cases), list(self.settings.val_cases)

    # -- steps ----------------------------------------------------------------------------------

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's training step, with the strategy's channels and loss (after the
        augmentation on the device, with ``augmentation: gpu``)."""
        if self._gpu_augment is not None:
            batch = self._augment_on_device(batch)
        data = batch["data"]
        inputs = data[:, self._input_idx].to(self.device, non_blocking=True)
        privileged = data[:, self._privileged_idx].to(self.device, non_blocking=True)
        terms: dict[str, torch.Tensor] = {}
        unlabelled = None
        if self._unlabelled is not None:
            extra = next(self._unlabelled)
            if self._gpu_augment is not None:
                extra = self._augment_on_device(extra)
            unlabelled = extra["data"][:, self._input_idx].to(self.device, non_blocking=True)

        def strategy_loss(outputs: Any, target: Any) -> torch.Tensor:
            step_batch = StepBatch(inputs, privileged, target,
                                   self.settings.training_modalities, unlabelled)
            terms.update(self.settings.strategy.training_loss(
                TrainingStep(self._strategy_model, outputs, step_batch, self.context)))
            return terms["loss"]

        self.loss = strategy_loss
        try:
            result = super().train_step({**batch, "data": inputs})
        finally:
            self.loss = self._supervised_loss
        for name, value in terms.items():
            if name != "loss":
                result[name] = value.detach().float().cpu().numpy()
        self._train_terms.append({k: float(np.mean(v)) for k, v in result.items()})
        return result

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step (supervised loss, pseudo-Dice) on the strategy's inputs;
        for a model that does not segment, the strategy's validation terms (no pseudo-Dice:
        its counts are zero, so nnU-Net's Dice is NaN)."""
        data = batch["data"]
        strategy = self.settings.strategy
        if type(strategy).validation_terms is Strategy.validation_terms:
            return super().validation_step({**batch, "data": data[:, self._input_idx]})
        inputs = data[:, self._input_idx].to(self.device, non_blocking=True)
        probe = StepBatch(inputs, data[:, self._privileged_idx].to(self.device),
                          batch["target"], self.settings.training_modalities)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            terms = strategy.validation_terms(
                TrainingStep(self._strategy_model, self.network(inputs), probe, self.context))
        assert terms is not None
        zeros = np.zeros(self.label_manager.num_segmentation_heads)
        return {"loss": terms["loss"].detach().float().cpu().numpy(),
                "tp_hard": zeros, "fp_hard": zeros, "fn_hard": zeros}

    def on_validation_epoch_end(self, val_outputs: list[dict]) -> None:
        """nnU-Net's pseudo-Dice; a region absent from every validation patch (common with
        tiny patches), or a model that does not segment, gives NaN, as in nnU-Net, without
        numpy's warnings."""
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            super().on_validation_epoch_end(val_outputs)

    # -- the loop -------------------------------------------------------------------------------

    def on_train_epoch_start(self) -> None:
        self._train_terms = []
        super().on_train_epoch_start()

    def on_epoch_end(self) -> None:
        """The callbacks every k epochs, then nnU-Net's bookkeeping and checkpoints.

        The callbacks run first: a Job killed between the two then resumes from the previous
        checkpoint and logs this epoch again (the epoch log keeps the last record of an epoch),
        whereas the other order would resume after an epoch whose report was never written."""
        epoch = self.current_epoch
        due = (epoch + 1) % self.settings.validate_every == 0 or epoch == self.num_epochs - 1
        report = None
        if due and self.settings.callbacks:
            dice = [float(d) for d in self.logger.get_value("dice_per_class_or_region", step=-1)]
            names = sorted({k for t in self._train_terms for k in t})
            report = EpochReport(
                epoch=epoch,
                learning_rate=float(self.optimizer.param_groups[0]["lr"]),
                train_terms={n: float(np.mean([t[n] for t in self._train_terms if n in t]))
                             for n in names},
                val_loss=float(self.logger.get_value("val_losses", step=-1)),
                val_dice=dice,
                mean_val_dice=float(self.logger.get_value("mean_fg_dice", step=-1)),
            )
        if report is not None:
            for callback in self.settings.callbacks:
                callback(report)
        # nnU-Net redraws its progress PNG every epoch (~0.5 s of matplotlib): kdbench's curves
        # are in MLflow, so the PNG is drawn only with checkpoints and at the end.
        drawn = (epoch + 1) % self.save_every == 0 or epoch == self.num_epochs - 1
        if not drawn:
            self.logger.plot_progress_png = lambda *args, **kwargs: None
        try:
            super().on_epoch_end()
        finally:
            self.logger.__dict__.pop("plot_progress_png", None)

    def on_train_start(self) -> None:
        """nnU-Net's start-up, without the architecture plot (it needs hiddenlayer)."""
        self.plot_network_architecture = lambda: None
        super().on_train_start()
        if self.settings.unlabelled_cases:
            self._unlabelled = self._unlabelled_loader(self.settings.unlabelled_cases)
        self._restore_rng()

    def _unlabelled_loader(self, cases: Sequence[str]) -> Any:
        """nnU-Net's training loader and augmentation over ``cases``, drawing patches without
        foreground oversampling (where the tumour lies is a label: it must not guide them)."""
        split, oversample = self.do_split, self.oversample_foreground_percent
        self.do_split = lambda: (list(cases), list(self.settings.val_cases))
        self.oversample_foreground_percent = 0.0
        try:
            loader, val_loader = self.get_dataloaders()
        finally:
            self.do_split, self.oversample_foreground_percent = split, oversample
        finish = getattr(val_loader, "_finish", None)
        if finish is not None:
            finish()
        return loader

    def on_train_end(self) -> None:
        """nnU-Net's end of training; the unlabelled loader's workers are stopped too."""
        super().on_train_end()
        finish = getattr(self._unlabelled, "_finish", None)
        if finish is not None:
            finish()
