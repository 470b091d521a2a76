"""Strategies: what a benchmark compares."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from kdbench.components.base import Component
from kdbench.types import Modalities, ModalityUse

if TYPE_CHECKING:
    from torch import Tensor, nn

#: The kinds of dependency a strategy can declare.
REQUIREMENTS: tuple[str, ...] = ("teacher", "generator")


@dataclass
class BuildContext:
    """What the backbone gives a strategy to build its networks and losses.

    Attributes:
        network: ``network(in_channels, deep_supervision=True, out_channels=None, dropout=0.0)
            -> nn.Module``: a backbone network from the plans (nnU-Net's PlainConvUNet or
            ResEnc), for any number of input channels, with the backbone's outputs (region
            logits for WT, TC, ET) unless ``out_channels`` asks for another number (a
            generator's images); ``dropout`` adds channel dropout to every convolution block.
        supervised_loss: the backbone's loss (nnU-Net: Dice + BCE on the deep-supervision
            outputs): ``supervised_loss(outputs, target) -> Tensor``.
        num_outputs: number of output channels (3 regions).
        device: the torch device.
        teacher: the frozen teacher (eval mode, on the device) when the strategy requires one;
            it reads :attr:`teacher_modalities`.
        teacher_modalities: the channels the teacher reads.
        generator: the frozen generator model (eval mode, on the device) when the strategy
            requires one; :attr:`dependencies` ``["generator"]`` knows how to use it.
        dependencies: role (``teacher``, ``generator``) -> the component instance of the Job
            this one depends on (its hyper-parameters and modalities). Given at training and
            when a finished model is loaded again, so that ``build`` can rebuild a model that
            contains its dependencies' architectures.
        patch_size: the training patch size (nnU-Net's plans, or the protocol's override).
        for_training: ``True`` when the model is built to be trained (initial weights matter:
            a pretrained checkpoint is loaded then), ``False`` when a finished Job's model is
            rebuilt to receive its own checkpoint.
        deep_supervision_weights: the backbone's weight of each deep-supervision output (nnU-Net:
            1, 1/2, 1/4, ..., the lowest 0, normalised), for terms that follow its scheme.
    """

    network: Callable[..., nn.Module]
    supervised_loss: Callable[[Any, Any], Tensor]
    num_outputs: int
    device: Any
    teacher: nn.Module | None = None
    teacher_modalities: tuple[str, ...] = ()
    deep_supervision_weights: tuple[float, ...] = ()
    generator: nn.Module | None = None
    dependencies: dict[str, Any] = field(default_factory=dict)
    patch_size: tuple[int, ...] = ()
    for_training: bool = True
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepBatch:
    """One training batch, channels already selected by the engine.

    Attributes:
        inputs: the strategy's input channels (:meth:`Strategy.input_modalities`).
        privileged: every training modality, for what a strategy may use only in training
            (a teacher's input, a generator's target).
        target: the backbone's targets (nnU-Net: one tensor per deep-supervision scale).
        modalities: the modalities of ``privileged``, in channel order.
        unlabelled: a batch of the strategy's input channels from cases outside every training
            subset (:meth:`Strategy.unlabelled_cases`), augmented like the training batch; no
            label and no other modality of those cases is given. ``None`` unless asked for.
    """

    inputs: Tensor
    privileged: Tensor
    target: Any
    modalities: tuple[str, ...]
    unlabelled: Tensor | None = None

    def select(self, modalities: Sequence[str]) -> Tensor:
        """Channels of ``modalities`` taken from :attr:`privileged`."""
        return self.privileged[:, [self.modalities.index(m) for m in modalities]]


def _as_list(outputs: Any) -> list[Any]:
    """Deep-supervision outputs as a list (one output: a list of one)."""
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


@dataclass
class TrainingStep:
    """One batch as a strategy's loss sees it: what :meth:`Strategy.training_loss` (and
    :meth:`Strategy.validation_terms`) receive.

    Attributes:
        model: the module :meth:`Strategy.build` returned (not the backbone's compiled or
            distributed wrapper), for a second pass (genkd's unlabelled cases) or a part of it
            (a generator's discriminator).
        outputs: ``model(batch.inputs)``, computed by the engine inside the backbone's own
            training step (its mixed precision, gradient scaling and clipping apply).
        batch: the batch, channels selected.
        context: the build context (the supervised loss, the teacher, the weights).

    Example:
        >>> import torch
        >>> context = BuildContext(network=None, num_outputs=1, device="cpu",
        ...                        supervised_loss=lambda o, t: o[0].mean(),
        ...                        deep_supervision_weights=(0.75, 0.25, 0.0))
        >>> batch = StepBatch(torch.ones(1, 1), torch.ones(1, 1), None, ("t1ce",))
        >>> step = TrainingStep(None, [torch.tensor(2.0), torch.tensor(4.0),
        ...                            torch.tensor(8.0)], batch, context)
        >>> float(step.deep_supervision_sum(lambda s: s * s))  # 0.75*4 + 0.25*16
        7.0
    """

    model: Any
    outputs: Any
    batch: StepBatch
    context: BuildContext

    @cached_property
    def teacher_outputs(self) -> list[Tensor]:
        """The frozen teacher's outputs (one per deep-supervision scale, full resolution
        first) on ``batch.select(context.teacher_modalities)``.

        Computed once, at first use, under ``torch.inference_mode()`` and whatever autocast
        the caller runs in (the backbone's mixed precision), then cloned into ordinary
        tensors: constants for autograd, never a path to the teacher's weights.
        """
        return self.teacher_on(self.batch.select(self.context.teacher_modalities))

    def teacher_on(self, inputs: Tensor) -> list[Tensor]:
        """The frozen teacher's outputs on ``inputs`` (its channels, e.g. of an unlabelled
        batch), computed as :attr:`teacher_outputs` is: in inference mode, then cloned."""
        import torch

        teacher = self.context.teacher
        if teacher is None:
            raise RuntimeError(
                "this step has no teacher: a strategy reads teacher_outputs only when it "
                "declares requires = ('teacher',) (the engine then loads one)")
        with torch.inference_mode():
            out = teacher(inputs)
        return [t.clone() for t in _as_list(out)]

    def supervised(self, outputs: Any = None) -> Tensor:
        """The backbone's supervised loss of :attr:`outputs` (or of ``outputs``, e.g. a
        model's segmentation among other outputs) against ``batch.target``."""
        return self.context.supervised_loss(self.outputs if outputs is None else outputs,
                                            self.batch.target)

    def teacher_at_student_scales(self) -> list[Tensor]:
        """:attr:`teacher_outputs`, one per student output: a teacher with fewer outputs than
        the student (one, as a foundation model) has its full-resolution logits
        area-downsampled to each missing scale's shape, so that every deep-supervision term
        has a target and the distillation's strength does not depend on the teacher's
        architecture."""
        return self.at_scales(self.teacher_outputs)

    def at_scales(self, targets: Sequence[Tensor], outputs: Any = None) -> list[Tensor]:
        """``targets`` (full resolution first), one per output of :attr:`outputs` (or of
        ``outputs``): the missing scales are the first target area-downsampled to each
        output's shape."""
        import torch.nn.functional as F

        student = _as_list(self.outputs if outputs is None else outputs)
        out = list(targets[:len(student)])
        for s in student[len(out):]:
            out.append(F.interpolate(targets[0], size=tuple(s.shape[2:]), mode="area"))
        return out

    def deep_supervision_sum(self, term: Callable[..., Any], *others: Any,
                             outputs: Any = None, renormalise: bool = False) -> Any:
        """``sum_k w_k * term(outputs[k], others[0][k], ...)`` over the deep-supervision
        outputs (:attr:`outputs` unless ``outputs`` is given), with the backbone's weights
        ``context.deep_supervision_weights`` (``(1,)`` when none). Scales of weight 0
        (nnU-Net's lowest) are skipped; the shortest of the sequences ends the sum. With
        ``renormalise`` the sum is divided by the weights actually used, so that a sum cut
        short (a model with fewer outputs) keeps the strength of the full one."""
        weights = self.context.deep_supervision_weights or (1.0,)
        student = _as_list(self.outputs if outputs is None else outputs)
        used = [(w, args) for w, *args in zip(weights, student, *others, strict=False) if w > 0]
        total = sum(w * term(*args) for w, args in used)
        if renormalise and used:
            total = total / sum(w for w, _ in used)
        return total


@dataclass(frozen=True)
class SettingsContext:
    """What :meth:`Strategy.check_settings` checks a strategy's settings against, before any
    Job runs (``kdbench protocol validate``, and again once the dataset's size is known).

    Attributes:
        dependencies: role (``teacher``, ``generator``) -> the dependency's class and resolved
            hyper-parameters.
        unlabelled_pool: cases outside the test set and every training subset of a seed (what
            :meth:`Strategy.unlabelled_cases` may take), ``None`` while the dataset's size is
            unknown.
        pool_arithmetic: how ``unlabelled_pool`` was computed, for messages (``32 cases - 8
            test - 12 in the largest subset``).
    """

    dependencies: Mapping[str, tuple[type, Mapping[str, Any]]] = field(default_factory=dict)
    unlabelled_pool: int | None = None
    pool_arithmetic: str = ""


class Strategy(Component):
    """A way to segment with missing modalities (mono, multi, KD, HeMIS, ...).

    A strategy declares, as class attributes, its ``name`` and ``version``, the dependencies
    it needs (``requires``: ``"teacher"`` and/or ``"generator"``, with defaults that a protocol
    may override) and its hyper-parameters. :meth:`modality_uses` says how a scenario becomes
    Jobs. The training lifecycle the engine calls (build networks, loss of one batch, predict)
    is added with the engine; until then a strategy is a declaration the plan can expand.

    Example:
        >>> class Mono(Strategy):
        ...     '''nnU-Net on the available modalities only.'''
        ...     name = "mono"
    """

    requires: ClassVar[tuple[str, ...]] = ()
    default_teacher: ClassVar[str | None] = None
    default_generator: ClassVar[str | None] = None

    def __init__(self, hparams: Mapping[str, Any], modalities: ModalityUse) -> None:
        """A strategy for one Job: its resolved hyper-parameters and modalities."""
        self.hparams = dict(hparams)
        self.modalities = modalities

    # -- the training lifecycle, called by the backbone's engine --------------------------------

    def input_modalities(self) -> tuple[str, ...]:
        """The channels the trained model reads: the one subset it is scored on, or every
        training modality when it is scored on several (a model of all subsets)."""
        if len(self.modalities.evaluate) == 1:
            return self.modalities.evaluate[0]
        return self.modalities.training

    def build(self, context: BuildContext) -> nn.Module:
        """Build the trainable model; its ``forward(inputs)`` returns the backbone's outputs.

        The default is one backbone network on :meth:`input_modalities`. The returned module is
        what the optimizer updates and the checkpoint stores.
        """
        return context.network(len(self.input_modalities()))

    def training_loss(self, step: TrainingStep) -> dict[str, Tensor]:
        """Named loss terms of one batch; ``"loss"`` is what is minimised, all are logged.

        ``step`` (:class:`TrainingStep`) holds the model, its outputs on ``step.batch.inputs``
        (computed inside the backbone's own training step: its mixed precision, gradient
        scaling and clipping apply), the batch and the build context, with helpers: the
        supervised loss, the teacher's outputs (computed once, in inference mode) and the
        deep-supervision-weighted sum of a term. The default is the backbone's supervised loss.
        """
        return {"loss": step.supervised()}

    def validation_terms(self, step: TrainingStep) -> dict[str, Tensor] | None:
        """Named validation terms of one batch (``"loss"`` first) for a model that does not
        segment (a generator), from the same :class:`TrainingStep` as :meth:`training_loss`
        (in eval mode, no gradients); ``None`` (the default) keeps the backbone's validation:
        its loss and pseudo-Dice per region."""
        return None

    def training_cases(self, cases: tuple[str, ...]) -> tuple[str, ...]:
        """The labelled cases this Job trains on, from its (N, seed) training subset (in the
        subset's seeded order). The default is all of them; a few-shot fine-tuning takes the
        first k."""
        return cases

    def unlabelled_cases(self, pool: tuple[str, ...]) -> tuple[str, ...]:
        """Cases whose available modalities the Job may read without their labels.

        ``pool`` holds the cases outside the test set and outside the largest training subset
        (with its validation cases) of the Job's seed, in a seeded order: the same for every N.
        The default uses none.
        """
        return ()

    @classmethod
    def check_settings(cls, hparams: Mapping[str, Any], context: SettingsContext
                       ) -> list[tuple[tuple[str, ...], str]]:
        """Problems of a combination of settings that each validate alone but cannot work
        together (e.g. Monte Carlo samples from a generator that cannot sample), found at
        ``protocol validate`` rather than hours into a run.

        Args:
            hparams: the strategy's resolved hyper-parameters (not checked when ``tuned``).
            context: its dependencies' classes and hyper-parameters, and the unlabelled pool.

        Returns:
            ``(key, message)`` pairs, ``key`` relative to the protocol's strategy entry (e.g.
            ``("hparams", "mc_samples")``). The default finds none.
        """
        return []

    def training_budget(self, budget: Any) -> Any:
        """The budget this Job trains with (a :class:`kdbench.components.requests.Budget`); the
        default is the protocol's. A strategy that only assembles trained parts returns zero
        epochs; a fine-tuning may lower the learning rate (``initial_lr``)."""
        return budget

    def inference_model(self, model: nn.Module, available: tuple[str, ...]) -> nn.Module:
        """The module the backbone's inference calls on the channels of ``available``.

        The default is the trained model itself; a model of all subsets (HeMIS) returns a view
        that knows which modalities are present.
        """
        return model

    @classmethod
    def modality_uses(
        cls, training: Modalities, available: Sequence[Modalities]
    ) -> list[ModalityUse]:
        """Split a scenario into Jobs.

        The default trains one model per available subset, with every training modality open
        to it (through its teacher or generator), and scores it on that subset. Override for a
        strategy that trains one model for all subsets (HeMIS) or only on the subset (mono).

        Args:
            training: modalities present in the training data.
            available: the subsets available at inference time (one, or the 15 of ``all``).
        """
        return [ModalityUse(training=training, evaluate=(subset,)) for subset in available]

    @classmethod
    def validate_declaration(cls) -> list[str]:
        problems = super().validate_declaration()
        unknown = [r for r in cls.requires if r not in REQUIREMENTS]
        if unknown:
            problems.append(f"`requires` may hold {list(REQUIREMENTS)}, got {unknown}")
        if "teacher" in cls.requires and not cls.default_teacher:
            problems.append("a strategy that requires a teacher must set `default_teacher`")
        if "generator" in cls.requires and not cls.default_generator:
            problems.append("a strategy that requires a generator must set `default_generator`")
        for method in ("training_loss", "validation_terms"):
            params = [p for p in inspect.signature(getattr(cls, method)).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(params) != 2:  # self, step
                problems.append(f"`{method}` must take one TrainingStep (def {method}(self, "
                                f"step)), got ({', '.join(p.name for p in params)}): the step "
                                "holds the outputs, the batch and the context")
        return problems

    @classmethod
    def describe(cls) -> dict[str, Any]:
        out = super().describe()
        out["requires"] = {
            r: getattr(cls, f"default_{r}") for r in cls.requires
        }
        return out
