"""Generators: models that synthesise missing modalities from the available ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from kdbench.components.base import Component
from kdbench.components.strategy import Strategy
from kdbench.components.teacher import TRAINABLE
from kdbench.types import Modalities, ModalityUse

if TYPE_CHECKING:
    from torch import Tensor, nn


class Generator(Component):
    """A generative model trained as a Job per (N, seed) and available subset, shared by every
    strategy that uses it (synthesis-then-segment, generative distillation).

    A generator Job trains on the (N, seed) training subset to synthesise, from the modalities
    of its ModalityUse's one evaluated subset (the *available* ones), every other training modality
    (the *missing* ones). It is scored on the test set by the image quality of what it
    synthesises (MAE, PSNR, SSIM inside the brain mask) and by the Dice of a frozen multi-modal
    segmenter fed the completed input, against the same segmenter on real input (ΔDice): that
    segmenter is the Job's ``teacher`` dependency (``scoring_teacher`` unless the strategy that
    needs the generator names its own teacher).

    A class that is also a :class:`kdbench.Strategy` is trained by the backbone's engine like
    any Job; consumers call :meth:`synthesise`, :meth:`sample` and :meth:`complete` on the
    frozen trained model.
    """

    scoring_teacher: ClassVar[str] = "multi"

    @classmethod
    def validate_declaration(cls) -> list[str]:
        problems = super().validate_declaration()
        if not issubclass(cls, Strategy):
            problems.append("a generator " + TRAINABLE.format(name=cls.__name__,
                                                              role="Generator"))
        if cls.synthesise is Generator.synthesise:
            problems.append("a generator must implement synthesise(model, inputs) -> missing "
                            "channels (its point estimate)")
        return problems

    @classmethod
    def generator_use(cls, training: Modalities, available: Modalities) -> ModalityUse:
        """Trains on every training modality; reads ``available`` (its one evaluated subset)."""
        return ModalityUse(training=training, evaluate=(available,))

    @property
    def available(self) -> Modalities:
        """The modalities the generator reads."""
        return self.modalities.evaluate[0]  # type: ignore[attr-defined]

    @property
    def missing(self) -> Modalities:
        """The modalities it synthesises, in channel order."""
        return tuple(m for m in self.modalities.training if m not in self.available)  # type: ignore[attr-defined]

    @classmethod
    def can_sample(cls, hparams: Mapping[str, Any]) -> bool:
        """Whether :meth:`sample` draws distinct samples with these hyper-parameters (a
        strategy averaging samples checks it); the default: whether the class overrides
        :meth:`sample`."""
        return cls.sample is not Generator.sample

    def synthesise(self, model: nn.Module, inputs: Tensor) -> Tensor:
        """The point estimate of the missing channels from the available ones (no sampling)."""
        raise NotImplementedError

    def sample(self, model: nn.Module, inputs: Tensor, samples: int) -> list[Tensor]:
        """``samples`` stochastic draws of the missing channels (the point estimate repeated
        for a deterministic generator)."""
        return [self.synthesise(model, inputs)] * samples

    def complete(self, available: Tensor, missing: Tensor) -> Tensor:
        """Every training channel in channel order: ``available`` real, ``missing`` synthesised."""
        import torch

        parts: list[Any] = []
        for modality in self.modalities.training:  # type: ignore[attr-defined]
            if modality in self.available:
                i = self.available.index(modality)
                parts.append(available[:, i:i + 1])
            else:
                i = self.missing.index(modality)
                parts.append(missing[:, i:i + 1].to(available.dtype))
        return torch.cat(parts, dim=1)
