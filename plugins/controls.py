"""Controls that isolate what distillation is claimed to transfer.

A ``kd`` student's gain over ``mono`` mixes what the teacher's extra modalities know (the
privileged effect the hypothesis is about) with what any soft target does (regularisation,
born-again networks, label smoothing) and with what unlabelled cases add. Each control here
keeps ``kd``'s loss and removes one source:

- ``kd`` with ``teacher: mono`` (the born-again control, Furlanello et al., ICML 2018) is a
  protocol entry of ``kd`` itself: a teacher that reads only the student's modalities.
- ``label_smoothing``: the student distilled from its *own smoothed labels*, with ``kd``'s
  λ, T and deep-supervision weighting (teacher-free KD, Yuan et al., CVPR 2020, "Revisiting
  knowledge distillation via label smoothing regularization", Tf-KD_reg): a soft target with
  no teacher at all.
- ``pseudo_label``: ``genkd``'s generative augmentation without its generator: the same
  unlabelled cases (available modalities only) labelled by a teacher that reads the student's
  own modalities (``mono`` by default), distilled with the same weights. What ``genkd_aug``
  gains over it is what the generator-completed multi-modal teacher adds.

docs/strategies.md gives the losses; the report's contrasts (``statistics.contrasts``) test
``kd`` against each with seeds as replicates.
"""

from __future__ import annotations

import math
from typing import Any

from kdbench import BuildContext, SettingsContext, Strategy, TrainingStep, hookimpl, hparam
from kdbench_plugins.genkd import first_unlabelled, unlabelled_pool_problems
from kdbench_plugins.kd import DistillationParams, binary_kl


def smoothed_label_logits(target: Any, confidence: float) -> Any:
    """Logits of smoothed binary region labels: ``±logit(confidence)`` (the labelled state has
    probability ``confidence``, the other ``1 - confidence``)."""
    magnitude = math.log(confidence / (1 - confidence))
    return (2 * target.float().clamp(0, 1) - 1) * magnitude


class LabelSmoothingParams(DistillationParams):
    """``label_smoothing``'s hyper-parameters: ``kd``'s term and the labels' confidence."""

    label_confidence: float = hparam(
        0.9, low=0.6, high=0.99, gt=0.5, lt=1.0,
        help="probability the smoothed target gives each voxel's labelled state, per region "
        "(before tempering by T, as kd's teacher logits are)",
        source="Yuan et al., CVPR 2020 (Tf-KD_reg): the correct class at a = 0.9",
    )


class LabelSmoothingControl(Strategy):
    """The student distilled from its own smoothed labels (no teacher): ``kd``'s term with
    the teacher's logits replaced by ``±logit(label_confidence)``."""

    name = "label_smoothing"
    version = "1"
    Params = LabelSmoothingParams

    def training_loss(self, step: TrainingStep) -> dict[str, Any]:
        """Supervised + λ · T² · KL(smoothed labels_T || student_T), per deep-supervision scale
        against that scale's labels, renormalised like ``kd``'s."""
        supervised = step.supervised()
        temperature = float(self.hparams["temperature"])
        confidence = float(self.hparams["label_confidence"])
        targets = step.batch.target
        targets = list(targets) if isinstance(targets, list | tuple) else [targets]
        smoothed = [smoothed_label_logits(t, confidence) for t in targets]
        distillation = step.deep_supervision_sum(
            lambda s, t: binary_kl(s, t, temperature), smoothed, renormalise=True)
        loss = supervised + self.hparams["kd_weight"] * distillation
        return {"supervised": supervised, "distillation": distillation, "loss": loss}


class PseudoLabelParams(DistillationParams):
    """``pseudo_label``'s hyper-parameters: ``kd``'s term and ``genkd``'s unlabelled cases."""

    unlabelled_cases: int = hparam(
        4, low=0, high=10000, ge=0,
        help="cases outside every training subset read without labels (their available "
        "modalities only), labelled by the teacher",
        source="kdbench choice: a handful, which the smallest protocols hold; set it to the "
        "genkd_aug it controls (genkd_phantom: 8)",
    )
    unlabelled_weight: float = hparam(
        1.0, low=0.0, high=10.0, ge=0.0,
        help="weight of the unlabelled cases' distillation term, relative to kd_weight",
        source="genkd's default: as the labelled cases' term",
    )


class PseudoLabelControl(Strategy):
    """Distillation from a teacher on the student's own modalities, on the labelled cases and
    on unlabelled ones (their available modalities only): ``genkd_aug`` without a generator."""

    name = "pseudo_label"
    version = "1"
    requires = ("teacher",)
    default_teacher = "mono"
    Params = PseudoLabelParams

    @classmethod
    def check_settings(cls, hparams: Any, context: SettingsContext
                       ) -> list[tuple[tuple[str, ...], str]]:
        """The unlabelled cases must fit in the pool."""
        return unlabelled_pool_problems(int(hparams["unlabelled_cases"]), context)

    def build(self, context: BuildContext) -> Any:
        """The student; its teacher must read no modality beyond the student's (an unlabelled
        case gives only those)."""
        extra = [m for m in context.teacher_modalities if m not in self.input_modalities()]
        if context.teacher is not None and extra:
            raise ValueError(
                f"pseudo_label: the teacher reads {', '.join(extra)}, which the unlabelled "
                f"cases do not give (only {', '.join(self.input_modalities())}); use a "
                "teacher on the student's modalities (teacher: mono)")
        return super().build(context)

    def unlabelled_cases(self, pool: tuple[str, ...]) -> tuple[str, ...]:
        """The first ``unlabelled_cases`` of the pool (an error when it has fewer)."""
        return first_unlabelled(self.name, int(self.hparams["unlabelled_cases"]), pool)

    def training_loss(self, step: TrainingStep) -> dict[str, Any]:
        """Supervised + λ KL(teacher) on the batch + λ μ KL(teacher) on the unlabelled batch."""
        supervised = step.supervised()
        temperature = float(self.hparams["temperature"])

        def kl(s: Any, t: Any) -> Any:
            return binary_kl(s, t, temperature)

        distillation = step.deep_supervision_sum(kl, step.teacher_at_student_scales(),
                                                 renormalise=True)
        loss = supervised + self.hparams["kd_weight"] * distillation
        terms = {"supervised": supervised, "distillation": distillation}
        unlabelled = step.batch.unlabelled
        if unlabelled is not None:
            inputs = self.input_modalities()
            channels = [inputs.index(m) for m in step.context.teacher_modalities]
            teacher = step.teacher_on(unlabelled[:, channels])
            outputs = step.model(unlabelled)
            terms["distill_unlabelled"] = step.deep_supervision_sum(
                kl, step.at_scales(teacher, outputs), outputs=outputs, renormalise=True)
            loss = loss + (self.hparams["kd_weight"] * self.hparams["unlabelled_weight"]
                           * terms["distill_unlabelled"])
        terms["loss"] = loss
        return terms


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register the controls."""
    registry.add(LabelSmoothingControl)
    registry.add(PseudoLabelControl)
