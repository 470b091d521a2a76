"""The ``genkd`` strategy: generative knowledge distillation (kdbench's own method).

Classic distillation (``kd``) transfers what a teacher sees in *every* modality; part of that
knowledge cannot be recovered from the student's modalities, and as N grows the student's own
labels teach it the rest. ``genkd`` puts a generator between the two: the teacher is applied to
the student's available modalities completed by a generator trained on the same (N, seed)
subset, so that its targets carry only knowledge the student's input can support, and the
generator's samples say how sure that knowledge is. Variants are hyper-parameters, so that
each can be ablated (docs/genkd.md gives the losses and what is trained when):

- ``teacher_input``: ``bridged`` (teacher on [available + generator-completed]), ``real``
  (teacher on its own input, real modalities: ``kd``), or ``mixed`` (both terms,
  ``bridge_mix`` on the bridged); with ``teacher: synthesis`` (``fine_tune: true``) and
  ``real``, the bridged teacher fine-tuned on completed inputs;
- ``mc_samples`` > 1: Monte Carlo targets, the teacher's tempered probabilities averaged over
  generator samples (dropout on), each voxel's term weighted by the samples' agreement
  (``agreement_weighting``);
- ``unlabelled_cases`` > 0: generative augmentation, extra batches from cases outside every
  training subset whose labels and missing modalities are never read: their available channels
  are completed by the generator, labelled by the teacher, and distilled
  (``unlabelled_weight``).

At inference the student alone runs, on the available modalities.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Literal

from kdbench import BuildContext, SettingsContext, Strategy, TrainingStep, hookimpl, hparam
from kdbench_plugins.kd import DistillationParams, binary_kl_to


def _outputs(out: Any) -> list[Any]:
    return list(out) if isinstance(out, list | tuple) else [out]


def mc_targets(logits: list[list[Any]], temperature: float) -> tuple[list[Any], list[Any]]:
    """Monte Carlo targets from teacher logits of several samples.

    Args:
        logits: one list of outputs (deep-supervision scales) per generator sample.
        temperature: T.

    Returns:
        Per scale: the mean over samples of ``sigmoid(z / T)``, and the agreement
        ``|2 * mean_s 1[z_s > 0] - 1|`` (1: every sample votes alike, 0: split evenly).
    """
    import torch

    probs, agreement = [], []
    for scale in zip(*logits, strict=True):
        z = torch.stack([t.float() for t in scale])
        probs.append(torch.sigmoid(z / temperature).mean(0))
        agreement.append((2 * (z > 0).float().mean(0) - 1).abs())
    return probs, agreement


def unlabelled_pool_problems(wanted: int, context: SettingsContext
                             ) -> list[tuple[tuple[str, ...], str]]:
    """``hparams.unlabelled_cases`` beyond the unlabelled pool (when its size is known), with
    the pool's arithmetic (shared with the ``pseudo_label`` control)."""
    if context.unlabelled_pool is None or wanted <= context.unlabelled_pool:
        return []
    return [(("hparams", "unlabelled_cases"),
             f"unlabelled_cases = {wanted}, but only {context.unlabelled_pool} cases lie outside "
             f"the test set and the largest training subset ({context.pool_arithmetic}); lower "
             "it, lower the largest N, or add cases")]


def first_unlabelled(strategy: str, wanted: int, pool: tuple[str, ...]) -> tuple[str, ...]:
    """The first ``wanted`` cases of the unlabelled pool (an error when it has fewer)."""
    if wanted > len(pool):
        raise ValueError(f"{strategy}: unlabelled_cases = {wanted}, but only {len(pool)} cases "
                         "lie outside the test set and the largest training subset; lower it, "
                         "lower the largest N, or add cases")
    return pool[:wanted]


class GenerativeKDParams(DistillationParams):
    """``genkd``'s hyper-parameters: ``kd``'s distillation term and the generator's use."""

    teacher_input: Literal["bridged", "real", "mixed"] = hparam(
        "bridged",
        help="what the teacher reads: generator-completed input, real input, or both terms",
        source="kdbench (genkd): bridged by default, the method's point",
    )
    bridge_mix: float = hparam(
        0.5,
        low=0.0,
        high=1.0,
        help="weight of the bridged term in 'mixed' (1 - it on the real-input term)",
        source="kdbench choice: an even mix",
    )
    mc_samples: int = hparam(
        1,
        low=1,
        high=8,
        help="generator samples per batch (1: its point estimate, no sampling)",
        source="kdbench choice: 1 by default; 4 is the Monte Carlo ablation of docs/genkd.md",
    )
    agreement_weighting: bool = hparam(
        True,
        choices=(True, False),
        help="weight each voxel's term by the agreement of the samples (mc_samples > 1)",
        source="kdbench (genkd)",
    )
    unlabelled_cases: int = hparam(
        0,
        low=0,
        high=10000,
        help="cases outside every training subset used without labels (0: none)",
        source="kdbench choice: off by default (generative augmentation is an ablation)",
    )
    unlabelled_weight: float = hparam(
        1.0,
        low=0.0,
        high=10.0,
        help="weight of the unlabelled cases' distillation term, relative to kd_weight",
        source="kdbench choice: as the labelled cases' term",
    )


class GenerativeKD(Strategy):
    """Distillation through a generator: bridged teacher, Monte Carlo targets, augmentation."""

    name = "genkd"
    version = "3"  # 3: kd's λ default 0.075; 2: the KL to probabilities through torch's BCE
    requires = ("teacher", "generator")
    default_teacher = "multi"
    default_generator = "unet_generator"
    Params = GenerativeKDParams

    def build(self, context: BuildContext) -> Any:
        """The student on the available modalities (its generator must read the same)."""
        model = super().build(context)
        generator = context.dependencies.get("generator")
        if generator is not None and tuple(generator.available) != self.input_modalities():
            raise RuntimeError(f"the generator reads {generator.available}, the student "
                               f"{self.input_modalities()}")
        reads_all = tuple(context.teacher_modalities) == tuple(self.modalities.training)
        if context.teacher is not None and not reads_all and \
                self.hparams["teacher_input"] != "real":
            raise ValueError(
                f"genkd: the teacher reads {context.teacher_modalities} and completes its input "
                "itself (a bridged teacher such as `synthesis`): set teacher_input: real (the "
                "teacher's own input)")
        return model

    @classmethod
    def check_settings(cls, hparams: Any, context: SettingsContext
                       ) -> list[tuple[tuple[str, ...], str]]:
        """Monte Carlo targets need a generator that samples; generative augmentation needs
        unlabelled cases left outside the largest training subset."""
        problems = []
        samples = int(hparams["mc_samples"])
        generator, generator_hparams = context.dependencies.get("generator", (None, {}))
        if samples > 1 and hparams["teacher_input"] != "real" and generator is not None \
                and not generator.can_sample(generator_hparams):
            problems.append((("hparams", "mc_samples"),
                f"mc_samples = {samples} averages generator samples, but generator "
                f"{generator.name!r} cannot sample with these settings (e.g. dropout 0): every "
                "sample would be its point estimate. Set mc_samples: 1, or give the generator "
                "noise (generator_hparams: {dropout: 0.1})"))
        return problems + unlabelled_pool_problems(int(hparams["unlabelled_cases"]), context)

    def unlabelled_cases(self, pool: tuple[str, ...]) -> tuple[str, ...]:
        """The first ``unlabelled_cases`` of the pool (an error when it has fewer)."""
        return first_unlabelled(self.name, int(self.hparams["unlabelled_cases"]), pool)

    # -- targets --------------------------------------------------------------------------------

    def _bridged(self, inputs: Any, context: BuildContext) -> tuple[list[Any], list[Any] | None]:
        """Tempered teacher probabilities on completed input (and the samples' agreement)."""
        import torch

        generator = context.dependencies["generator"]
        samples = int(self.hparams["mc_samples"])
        temperature = float(self.hparams["temperature"])
        with torch.inference_mode():
            draws = (generator.sample(context.generator, inputs, samples) if samples > 1
                     else [generator.synthesise(context.generator, inputs)])
            logits = [_outputs(context.teacher(generator.complete(inputs, d))) for d in draws]
            probs, agreement = mc_targets(logits, temperature)
        probs = [p.clone() for p in probs]
        if samples > 1 and self.hparams["agreement_weighting"]:
            return probs, [a.clone() for a in agreement]
        return probs, None

    def _distil(self, step: TrainingStep, probs: list[Any], weights: list[Any] | None,
                outputs: Any = None) -> Any:
        temperature = float(self.hparams["temperature"])
        return step.deep_supervision_sum(
            lambda s, p, w: binary_kl_to(s, p, temperature, w), probs,
            repeat(None) if weights is None else weights, outputs=outputs)

    # -- the loss -------------------------------------------------------------------------------

    def training_loss(self, step: TrainingStep) -> dict[str, Any]:
        """Supervised + λ [(1-α) KL(real teacher) + α KL(bridged teacher, agreement-weighted)]
        + λ μ KL on unlabelled cases (see docs/genkd.md)."""
        import torch

        batch, context = step.batch, step.context
        terms: dict[str, Any] = {"supervised": step.supervised()}
        mode = self.hparams["teacher_input"]
        alpha = {"bridged": 1.0, "real": 0.0, "mixed": float(self.hparams["bridge_mix"])}[mode]
        temperature = float(self.hparams["temperature"])
        distillation: Any = 0.0
        if alpha < 1:
            real = [torch.sigmoid(t.float() / temperature) for t in step.teacher_outputs]
            terms["distill_real"] = self._distil(step, real, None)
            distillation = distillation + (1 - alpha) * terms["distill_real"]
        if alpha > 0:
            probs, agreement = self._bridged(batch.inputs, context)
            terms["distill_bridged"] = self._distil(step, probs, agreement)
            if agreement is not None:
                terms["agreement"] = agreement[0].mean()
            distillation = distillation + alpha * terms["distill_bridged"]
        loss = terms["supervised"] + self.hparams["kd_weight"] * distillation
        if batch.unlabelled is not None:
            probs, agreement = self._bridged(batch.unlabelled, context)
            terms["distill_unlabelled"] = self._distil(step, probs, agreement,
                                                       outputs=step.model(batch.unlabelled))
            loss = loss + (self.hparams["kd_weight"] * self.hparams["unlabelled_weight"]
                           * terms["distill_unlabelled"])
        terms["distillation"] = distillation  # alpha in [0, 1]: at least one term above
        terms["loss"] = loss
        return terms


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``genkd``."""
    registry.add(GenerativeKD)
