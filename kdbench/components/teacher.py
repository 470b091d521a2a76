"""Teachers: multi-modal networks that students distil from."""

from __future__ import annotations

from typing import Any, ClassVar

from kdbench.components.base import Component
from kdbench.components.strategy import Strategy
from kdbench.types import Modalities, ModalityUse

#: Why a teacher or generator must also be a strategy (shown when one is not).
TRAINABLE = ("is trained as a Job of its own, so it must also derive from kdbench.Strategy "
             "(e.g. `class {name}(Strategy, {role})`), which gives it build and training_loss")


class Teacher(Component):
    """A multi-modal teacher, trained (or fine-tuned) as a Job of its own per (N, seed).

    An in-domain teacher is an nnU-Net trained on every training modality; a foundation-model
    teacher is fine-tuned few-shot from a local checkpoint. A Job of a teacher is shared by every
    student of the same (N, seed) that names it. A class that is also a :class:`Strategy`
    (``multi``) gets one Job for both roles when the hyper-parameters agree.
    """

    kind: ClassVar[str] = "in-domain"

    @classmethod
    def validate_declaration(cls) -> list[str]:
        problems = super().validate_declaration()
        if not issubclass(cls, Strategy):
            problems.append("a teacher " + TRAINABLE.format(name=cls.__name__, role="Teacher"))
        return problems

    @classmethod
    def teacher_use(cls, training: Modalities, available: Modalities | None = None
                     ) -> ModalityUse:
        """The teacher trains on, and predicts from, every training modality.

        ``available`` is the student's subset: a teacher that reads only it (``synthesis``,
        which completes its input with a generator) is one Job per subset.
        """
        return ModalityUse(training=training, evaluate=(training,))

    def teacher_reads(self) -> Modalities:
        """The channels the teacher reads when a student distils from it (its
        :meth:`~kdbench.Strategy.input_modalities` unless it is seen through a subset)."""
        return self.input_modalities()  # type: ignore[attr-defined]

    def teacher_module(self, model: Any) -> Any:
        """The module a student calls on :meth:`teacher_reads`'s channels: the trained model
        itself, or a view of it (a hetero-modal model through the student's subset)."""
        return model

    def pretraining_cases(self) -> tuple[str, ...] | None:
        """The case ids the teacher's weights saw before its Job: ``()`` for a teacher trained
        from scratch (the default), the ids its checkpoint declares for a pretrained one, or
        ``None`` when they are undeclared and the protocol allows that.

        Before a Job trains, kdbench maps these ids to the dataset's (through the release's
        mapping tables, ``PreparedDataset.aliases``) and refuses the Job when one is a test
        case. Ids of other releases are fine: those without a counterpart are ignored.

        Raises:
            KdbenchError: the declaration cannot be read, or is missing and not allowed.
        """
        return ()
