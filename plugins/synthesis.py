"""The ``synthesis`` strategy: synthesise the missing modalities, then segment.

The first family of strategies (MM-GAN, ResViT style): at inference time, the generator of the
same (N, seed) training subset completes the available modalities with its point estimate of
the missing ones, and the multi-modal teacher of that subset segments the completed input.
By default the segmenter is the teacher itself, frozen (the Job only assembles the two and is
scored); with ``fine_tune`` it is fine-tuned from the teacher's weights on generator-completed
training inputs with nnU-Net's recipe and loss, at ``fine_tune_lr``, the generator frozen.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kdbench import BuildContext, HParams, ModalityUse, Strategy, Teacher, hookimpl, hparam


class SynthesisThenSegmentParams(HParams):
    """``synthesis``'s hyper-parameters."""

    fine_tune: bool = hparam(
        False,
        choices=(False, True),
        help="fine-tune the segmenter on generator-completed training inputs (else the "
        "frozen teacher segments them)",
        source="kdbench choice: frozen by default, as a segmenter scored on synthesised "
        "input in the BraTS 2023 synthesis challenge",
    )
    fine_tune_lr: float = hparam(
        1e-3,
        low=1e-4,
        high=1e-2,
        log=True,
        help="initial learning rate of the fine-tuning (nnU-Net's poly schedule)",
        source="kdbench choice: a tenth of nnU-Net's 1e-2, as fine-tuning from trained "
        "weights",
    )


class SynthesisThenSegment(Strategy, Teacher):
    """Generator completes the missing modalities; the multi-modal teacher segments them."""

    name = "synthesis"
    version = "1"
    requires = ("teacher", "generator")
    default_teacher = "multi"
    default_generator = "unet_generator"
    Params = SynthesisThenSegmentParams

    kind = "bridged"

    @classmethod
    def teacher_use(cls, training: tuple[str, ...], available: tuple[str, ...] | None = None
                     ) -> ModalityUse:
        """As a teacher (the *bridged* teacher of ``genkd``, fine-tuned or not), it reads the
        student's modalities and completes them itself: one Job per available subset."""
        if available is None:
            raise ValueError("synthesis as a teacher needs the student's available subset")
        return ModalityUse(training=training, evaluate=(available,))

    def input_modalities(self) -> tuple[str, ...]:
        """Only the available modalities: the rest is synthesised."""
        return self.modalities.evaluate[0]

    def build(self, context: BuildContext) -> Any:
        """The generator (frozen) and a segmenter initialised from the teacher."""
        from kdbench_plugins.generators.networks import SynthesiseThenSegment

        generator = context.dependencies["generator"]
        if context.generator is None:
            raise RuntimeError("synthesis needs its trained generator to build its model")
        segmenter = context.network(len(context.teacher_modalities))
        if context.teacher is not None:
            segmenter.load_state_dict(context.teacher.state_dict())
        if tuple(generator.modalities.training) != tuple(context.teacher_modalities):
            raise RuntimeError(f"the generator completes {generator.modalities.training} but the "
                               f"teacher reads {context.teacher_modalities}")
        segmenter.requires_grad_(bool(self.hparams["fine_tune"]))
        return SynthesiseThenSegment(generator, context.generator, segmenter)

    def training_budget(self, budget: Any) -> Any:
        """No training when frozen; the fine-tuning's learning rate otherwise."""
        if not self.hparams["fine_tune"]:
            return replace(budget, epochs=0)
        return replace(budget, initial_lr=float(self.hparams["fine_tune_lr"]))


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``synthesis`` as a strategy."""
    registry.add(SynthesisThenSegment)


@hookimpl
def kdbench_register_teachers(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``synthesis`` as a teacher (genkd's bridged teacher, fine-tuned or not)."""
    registry.add(SynthesisThenSegment)
