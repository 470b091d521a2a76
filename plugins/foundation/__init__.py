"""The ``foundation`` teacher: a pretrained network from a local file, fine-tuned few-shot.

A foundation-model teacher starts from weights trained elsewhere (a MONAI SegResNet or
SwinUNETR trained on BraTS, or any MONAI bundle), read from a LOCAL checkpoint file or bundle
directory — nothing is downloaded at run time — and is fine-tuned on the first ``few_shot_k``
cases of the Job's (N, seed) training subset with nnU-Net's recipe (its loader, augmentation,
Dice + BCE loss on region sigmoids, SGD and poly schedule) at ``fine_tune_lr``. It is then scored
on the test set like any teacher Job, and students (``kd``) distil from it.

Weights are read with ``torch.load(..., weights_only=True)`` or ``safetensors``: never by
unpickling arbitrary objects. ``checkpoint_sha256`` pins the file. A bundle's config is
instantiated with MONAI's ``ConfigParser`` (a config can hold Python expressions: treat a
bundle like code you install). The checkpoint declares the cases it was trained on (a side file
``<checkpoint>.training_cases.txt``, ``training_cases_file``, or a bundle's
``configs/metadata.json`` ``training_cases``): kdbench refuses it when one of them is a test
case (``pretraining_cases``), and refuses an undeclared one unless
``allow_undeclared_training_data``. See docs/foundation_teacher.md.

torch, MONAI and safetensors are imported only inside functions: loading this plugin costs
milliseconds. ``checkpoints`` reads the files, ``network`` holds the module kdbench trains.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from kdbench import (
    BuildContext,
    HParams,
    KdbenchError,
    Strategy,
    Teacher,
    TrainingStep,
    hookimpl,
    hparam,
)
from kdbench.modalities import MODALITIES, canonical

#: kdbench's output regions, in channel order (nnU-Net's region-based heads).
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")


class FoundationTeacherParams(HParams):
    """``foundation``'s hyper-parameters."""

    checkpoint: str = hparam(
        "",
        help="local path of the pretrained weights (.pt/.pth read with "
        "torch.load(weights_only=True), .safetensors), or of a MONAI bundle directory "
        "(architecture: bundle); relative paths resolve against the working directory",
        source="required: the protocol names the checkpoint (teacher_hparams)",
    )
    architecture: Literal["bundle", "segresnet", "swinunetr"] = hparam(
        "segresnet",
        help="network the weights belong to: MONAI's SegResNet or SwinUNETR built from "
        "network_kwargs, or the network_def of a MONAI bundle's configs/inference.json",
        source="kdbench choice: SegResNet is the network of MONAI's brats_mri_segmentation "
        "bundle (Myronenko, BrainLes 2018)",
    )
    network_kwargs: str = hparam(
        "{}",
        help="JSON object of constructor arguments of the SegResNet/SwinUNETR (in_channels "
        "and out_channels default to the lengths of channel_order and output_order)",
        source="MONAI's constructor defaults (monai.networks.nets)",
    )
    checkpoint_sha256: str = hparam(
        "",
        help="expected sha256 of the weights file (a bundle's models/model.*); empty: not "
        "checked",
        source="kdbench choice: pin the exact weights a result comes from",
    )
    channel_order: str = hparam(
        "t1,t1ce,t2,flair",
        help="comma-separated modalities of the checkpoint's input channels, in its order "
        "(MONAI's brats_mri_segmentation bundle: t1ce,t1,t2,flair)",
        source="kdbench's canonical channel order (kdbench/modalities.py)",
    )
    output_order: str = hparam(
        "WT,TC,ET",
        help="comma-separated regions of the checkpoint's sigmoid output channels, in its "
        "order (MONAI's brats_mri_segmentation bundle: TC,WT,ET)",
        source="kdbench's region order (nnU-Net's BraTS regions)",
    )
    few_shot_k: int = hparam(
        5, ge=0,
        help="fine-tune on the first k cases of the (N, seed) training subset; 0 or k >= N: "
        "all N",
        source="kdbench choice: a few-shot adaptation; set per protocol",
    )
    fine_tune_lr: float = hparam(
        1e-4,
        low=1e-6,
        high=1e-2,
        log=True,
        help="initial learning rate of nnU-Net's SGD and poly schedule during fine-tuning "
        "(nnU-Net trains from scratch at 1e-2)",
        source="kdbench choice: the learning rate MONAI's brats_mri_segmentation bundle was "
        "trained with (configs/train.json, Adam 1e-4), 1/100 of nnU-Net's from-scratch 1e-2",
    )
    fine_tune_epochs: int = hparam(
        0, ge=0,
        help="epochs of fine-tuning; 0: the protocol's training.epochs",
        source="kdbench choice: the protocol's budget unless set",
    )
    training_cases_file: str = hparam(
        "",
        help="file listing the case ids the checkpoint was trained on (.txt: one per line, "
        "'#' comments; .csv: a case_id column); empty: <checkpoint>.training_cases.txt beside "
        "the checkpoint. A bundle's configs/metadata.json `training_cases` list is read too",
        source="kdbench choice: a pretrained teacher says what it saw, so that no test case "
        "is among it (docs/foundation_teacher.md)",
    )
    allow_undeclared_training_data: bool = hparam(
        False,
        help="run a checkpoint that declares no training cases (they are then not checked "
        "against the test set, and the report flags the strategies that use it)",
        source="kdbench choice: refused by default, since BraTS 2018 cases are in BraTS "
        "2021/2023 under new ids",
    )


class FoundationTeacher(Strategy, Teacher):
    """A pretrained network (local checkpoint or MONAI bundle), fine-tuned few-shot."""

    name = "foundation"
    version = "1"
    kind = "foundation-model"
    Params = FoundationTeacherParams

    # -- the few-shot protocol ------------------------------------------------------------------

    def training_cases(self, cases: tuple[str, ...]) -> tuple[str, ...]:
        """The first ``few_shot_k`` cases of the training subset (in its seeded order).

        ``few_shot_k = 0`` takes every case; so does a k at or above the number of training
        cases, without an error (a learning curve sweeps N from small to large: at small N the
        teacher fine-tunes on all of them, as the ``train_cases`` of its ``done.json`` show).
        """
        k = int(self.hparams["few_shot_k"])
        if k < 0:
            raise KdbenchError(f"foundation teacher: few_shot_k must be 0 (all cases) or "
                               f"positive, got {k}")
        return tuple(cases) if k == 0 else tuple(cases)[:k]

    def training_budget(self, budget: Any) -> Any:
        """The protocol's budget at ``fine_tune_lr``, for ``fine_tune_epochs`` (0: the
        protocol's epochs)."""
        epochs = int(self.hparams["fine_tune_epochs"])
        if epochs < 0:
            raise KdbenchError(f"foundation teacher: fine_tune_epochs must be 0 (the "
                               f"protocol's epochs) or positive, got {epochs}")
        return dataclasses.replace(budget, initial_lr=float(self.hparams["fine_tune_lr"]),
                                   epochs=epochs or budget.epochs)

    # -- provenance -----------------------------------------------------------------------------

    def pretraining_cases(self) -> tuple[str, ...] | None:
        """The case ids the checkpoint declares it was trained on (see
        :func:`~kdbench_plugins.foundation.checkpoints.declared_training_cases`); ``None`` when
        it declares none and ``allow_undeclared_training_data`` is true.

        Raises:
            KdbenchError: the checkpoint is missing, a declaration cannot be read, or none is
                given and undeclared training data is not allowed.
        """
        from kdbench_plugins.foundation import checkpoints

        source = checkpoints.checkpoint_path(self.hparams["checkpoint"])
        architecture = self.hparams["architecture"]
        found = checkpoints.declared_training_cases(source, architecture,
                                                    self.hparams["training_cases_file"])
        if found is not None:
            return found[0]
        if self.hparams["allow_undeclared_training_data"]:
            return None
        raise KdbenchError(checkpoints.undeclared_message(source, architecture))

    # -- the model ------------------------------------------------------------------------------

    def build(self, context: BuildContext) -> Any:
        """The pretrained network behind kdbench's channel and region orders.

        The network is built from ``architecture`` (and ``network_kwargs`` or the bundle's
        config). When ``context.for_training`` is true the pretrained weights are loaded
        (sha256 checked first, strict key matching); when false (a finished Job's model rebuilt
        to receive its own checkpoint) the pretrained file is not read.
        """
        from kdbench_plugins.foundation import checkpoints
        from kdbench_plugins.foundation import network as network_module

        inputs = self.input_modalities()
        channels = _channel_order(self.hparams["channel_order"], inputs)
        regions = _output_order(self.hparams["output_order"], context.num_outputs)
        architecture = self.hparams["architecture"]
        # a finished Job's model needs no pretrained file, only a bundle's config
        needs_file = context.for_training or architecture == "bundle"
        source = checkpoints.checkpoint_path(self.hparams["checkpoint"], must_exist=needs_file)
        if architecture == "bundle":
            config, weights = checkpoints.bundle_files(source, need_weights=context.for_training)
            network = checkpoints.bundle_network(source, config)
        else:
            if source.is_dir():
                raise KdbenchError(
                    f"foundation teacher: checkpoint {source} is a directory; for a MONAI "
                    "bundle set `teacher_hparams: {architecture: bundle}`, else name the "
                    "weights file")
            weights = source
            network = checkpoints.monai_network(architecture, self.hparams["network_kwargs"],
                                     len(channels), len(regions))
        if context.for_training:
            checkpoints.check_sha256(weights, self.hparams["checkpoint_sha256"])
            checkpoints.load_pretrained(network, weights)
        wrapper = network_module.classes()[1](network, [inputs.index(m) for m in channels],
                                [regions.index(r) for r in REGIONS])
        return wrapper.to(context.device)

    def training_loss(self, step: TrainingStep) -> dict[str, Any]:
        """nnU-Net's Dice + BCE on the full-resolution output, unscaled.

        With deep supervision on, the model returns ``[logits]``: nnU-Net's
        ``DeepSupervisionWrapper`` zips outputs with its targets, so only the full-resolution
        pair is used, multiplied by its weight ``w_0`` (1/1.75 with four scales). Dividing by
        ``w_0`` makes the loss the plain full-resolution loss, so ``fine_tune_lr`` means what it
        says. (nnU-Net's logged validation loss keeps the ``w_0`` factor; the pseudo-Dice does
        not depend on it.)
        """
        supervised = step.supervised()
        weights = step.context.deep_supervision_weights
        if isinstance(step.outputs, list | tuple) and weights and weights[0] > 0:
            supervised = supervised / weights[0]
        return {"loss": supervised}


# -- hyper-parameters ---------------------------------------------------------------------------


def _channel_order(text: str, inputs: tuple[str, ...]) -> tuple[str, ...]:
    try:
        names = tuple(canonical(n) for n in str(text).split(",") if n.strip())
    except ValueError as exc:
        raise KdbenchError(f"foundation teacher: channel_order {text!r}: {exc}") from None
    if len(set(names)) != len(names) or not names:
        raise KdbenchError(f"foundation teacher: channel_order {text!r} must name each input "
                           f"channel of the checkpoint once (from {', '.join(MODALITIES)})")
    absent = [m for m in names if m not in inputs]
    if absent:
        raise KdbenchError(
            f"foundation teacher: the checkpoint reads {', '.join(absent)} (channel_order "
            f"{text!r}) but the Job trains on {', '.join(inputs)} only; give the scenario's "
        "training modalities or a checkpoint without them")
    return names


def _output_order(text: str, num_outputs: int) -> tuple[str, ...]:
    regions = tuple(r.strip().upper() for r in str(text).split(",") if r.strip())
    if sorted(regions) != sorted(REGIONS) or num_outputs != len(REGIONS):
        raise KdbenchError(
            f"foundation teacher: output_order {text!r} must order the regions "
            f"{', '.join(REGIONS)} once each (the checkpoint's {num_outputs}-channel sigmoid "
        "outputs); MONAI's brats_mri_segmentation bundle is TC,WT,ET")
    return regions


@hookimpl
def kdbench_register_teachers(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``foundation`` as a teacher."""
    registry.add(FoundationTeacher)
