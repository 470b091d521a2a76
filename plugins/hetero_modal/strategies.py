"""The ``hemis`` and ``uhved`` strategies: one model for every subset of modalities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kdbench import BuildContext, HParams, ModalityUse, Strategy, Teacher, TrainingStep, hparam


class HeteroModal(Strategy, Teacher):
    """A model trained once on every training modality, with modality dropout, and scored on
    each available subset (all 15 under the ``all`` scenario).

    As a teacher (``teacher: hemis``) it is the same model seen through the student's subset:
    a teacher that learnt from every modality but reads only the student's (the hetero-modal
    control of ``pseudo_label``, ``docs/genkd.md``)."""

    kind = "hetero-modal"

    @classmethod
    def teacher_use(cls, training: tuple[str, ...], available: tuple[str, ...] | None = None
                    ) -> ModalityUse:
        """Trained on every training modality, read through the student's subset: the Job of
        a scenario that makes only that subset available."""
        if available is None:
            raise ValueError("a hetero-modal teacher needs the student's available subset")
        return ModalityUse(training=training, evaluate=(available,))

    def teacher_reads(self) -> tuple[str, ...]:
        """The student's subset (the one subset this teacher Job is scored on)."""
        evaluate = self.modalities.evaluate
        return evaluate[0] if len(evaluate) == 1 else self.modalities.training

    def teacher_module(self, model: Any) -> Any:
        """The model through :meth:`teacher_reads` (its encoders of those modalities only)."""
        return self.inference_model(model, self.teacher_reads())

    @classmethod
    def modality_uses(
        cls, training: tuple[str, ...], available: Sequence[tuple[str, ...]]
    ) -> list[ModalityUse]:
        """One Job per scenario, scored on every available subset."""
        return [ModalityUse(training=training, evaluate=tuple(available))]

    def input_modalities(self) -> tuple[str, ...]:
        """Every training modality, even when the scenario scores one subset."""
        return self.modalities.training

    def inference_model(self, model: Any, available: tuple[str, ...]) -> Any:
        """The model through the subset ``available`` (its encoders only)."""
        from kdbench_plugins.hetero_modal.networks import SubsetView

        order = self.modalities.training
        missing = [m for m in available if m not in order]
        if missing:
            raise ValueError(f"{self.name} was trained on {list(order)}, not on {missing}")
        return SubsetView(model, [order.index(m) for m in available])


class HeMIS(HeteroModal):
    """U-HeMIS (Havaei et al., MICCAI 2016, U-Net form of Dorent et al., 2019) on nnU-Net
    blocks: per-modality encoders, mean and variance fusion at every skip, one decoder."""

    name = "hemis"
    version = "1"

    def build(self, context: BuildContext) -> Any:
        from kdbench_plugins.hetero_modal.networks import HeMISNet

        return HeMISNet(context, self.input_modalities())


class UHVEDParams(HParams):
    """``uhved``'s hyper-parameters."""

    kl_weight: float = hparam(
        0.1,
        low=0.01,
        high=1.0,
        log=True,
        help="weight of the KL terms (inter-posterior + prior, averaged over scales)",
        source="U-HVED (ReubenDo/U-HVED, extensions/u_hved/application.py): 0.1",
    )
    reconstruction_weight: float = hparam(
        0.1,
        low=0.01,
        high=1.0,
        log=True,
        help="weight of the mean squared reconstruction error of every modality",
        source="U-HVED (ReubenDo/U-HVED, extensions/u_hved/application.py): 0.1",
    )


class UHVED(HeteroModal):
    """U-HVED (Dorent et al., MICCAI 2019) on nnU-Net blocks: Gaussian latents per modality and
    scale, product-of-Gaussians fusion with a prior expert, segmentation and reconstruction."""

    name = "uhved"
    version = "1"
    Params = UHVEDParams

    def build(self, context: BuildContext) -> Any:
        from kdbench_plugins.hetero_modal.networks import UHVEDNet

        return UHVEDNet(context, self.input_modalities())

    def training_loss(self, step: TrainingStep) -> dict[str, Any]:
        """nnU-Net's segmentation loss + kl_weight * KL + reconstruction_weight * MSE."""
        import torch.nn.functional as F

        from kdbench_plugins.hetero_modal.fusion import hved_kl

        outputs = step.outputs
        supervised = step.supervised(outputs.segmentation)
        inter = prior = 0.0
        for mu, logvar in outputs.posteriors:
            scale_inter, scale_prior = hved_kl(mu, logvar, outputs.mask)
            inter, prior = inter + scale_inter, prior + scale_prior
        scales = len(outputs.posteriors)
        inter, prior = inter / scales, prior / scales
        reconstruction = F.mse_loss(outputs.reconstruction.float(), step.batch.inputs.float())
        loss = (supervised + self.hparams["kl_weight"] * (inter + prior)
                + self.hparams["reconstruction_weight"] * reconstruction)
        return {"loss": loss, "supervised": supervised, "kl_inter": inter, "kl_prior": prior,
                "reconstruction": reconstruction}
