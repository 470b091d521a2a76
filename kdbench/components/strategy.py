"""Strategies: what a benchmark compares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from kdbench.components.base import Component

Modalities = tuple[str, ...]

#: The kinds of dependency a strategy can declare.
REQUIREMENTS: tuple[str, ...] = ("teacher", "generator")


@dataclass(frozen=True)
class ModalityPlan:
    """Which modalities one Job trains with and which subsets it is scored on.

    Attributes:
        training: modalities whose images the Job may read while training (the model's own
            inputs and any privileged ones, e.g. a teacher's).
        evaluate: the modality subsets the trained model predicts from at test time.
    """

    training: Modalities
    evaluate: tuple[Modalities, ...]

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON form (lists in channel order)."""
        return {"training": list(self.training), "evaluate": [list(s) for s in self.evaluate]}


class Strategy(Component):
    """A way to segment with missing modalities (mono, multi, KD, HeMIS, ...).

    A strategy declares, as class attributes, its ``name`` and ``version``, the dependencies
    it needs (``requires``: ``"teacher"`` and/or ``"generator"``, with defaults that a protocol
    may override) and its hyper-parameters. :meth:`modality_plans` says how a scenario becomes
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

    @classmethod
    def modality_plans(
        cls, training: Modalities, available: Sequence[Modalities]
    ) -> list[ModalityPlan]:
        """Split a scenario into Jobs.

        The default trains one model per available subset, with every training modality open
        to it (through its teacher or generator), and scores it on that subset. Override for a
        strategy that trains one model for all subsets (HeMIS) or only on the subset (mono).

        Args:
            training: modalities present in the training data.
            available: the subsets available at inference time (one, or the 15 of ``all``).
        """
        return [ModalityPlan(training=training, evaluate=(subset,)) for subset in available]

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
        return problems

    @classmethod
    def describe(cls) -> dict[str, Any]:
        out = super().describe()
        out["requires"] = {
            r: getattr(cls, f"default_{r}") for r in cls.requires
        }
        return out
