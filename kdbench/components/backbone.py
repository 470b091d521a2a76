"""Backbones: the network family and training recipe every strategy runs on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from kdbench.components.base import Component

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np

    from kdbench.cases import CaseFiles
    from kdbench.components.requests import (
        ExportedPredictRequest,
        ExportRequest,
        ModelRequest,
        PredictRequest,
        SynthesisRequest,
        TrainRequest,
        TrainResult,
    )


class BackboneOptions(BaseModel):
    """Options a protocol may set under ``backbone.options``; subclasses add fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Backbone(Component):
    """A network family with its training recipe (nnU-Net first).

    ``Options`` is a pydantic model of the options a protocol may set; unknown keys are errors.
    """

    Options: ClassVar[type[BackboneOptions]] = BackboneOptions

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> BackboneOptions:
        """Validated options (raises ``pydantic.ValidationError``)."""
        return cls.Options.model_validate(options)

    @classmethod
    def preparation_options(cls, options: BackboneOptions) -> dict[str, Any]:
        """The options that change :meth:`prepare`'s output (default: all of them).

        A prepared dataset is redone only when these change, so options that matter only for
        training or inference must be left out.
        """
        return options.model_dump(mode="json")

    def prepare(
        self,
        cases: Sequence[CaseFiles],
        label_map: Mapping[int, int],
        dest: Path,
        options: BackboneOptions,
        *,
        name: str,
        num_processes: int = 1,
    ) -> dict[str, Any]:
        """Write the backbone's form of a checked dataset under ``dest`` (created by the caller).

        Called once per prepared dataset by ``kdbench data prepare``, for all strategies.

        Args:
            cases: the checked cases, canonical modalities present.
            label_map: source label value -> canonical label value.
            dest: an empty folder owned by this backbone.
            options: the backbone's validated options.
            name: the dataset's name.
            num_processes: worker processes to use.

        Returns:
            A JSON-ready summary recorded in the dataset's ``prepared.json``.
        """
        raise NotImplementedError(f"backbone {self.name!r} cannot prepare data")

    def load_case(
        self, dest: Path, summary: Mapping[str, Any], case_id: str, modalities: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One preprocessed case: (image channels of ``modalities``, segmentation).

        Every strategy reads the same preprocessed bytes; fewer modalities select channels.
        """
        raise NotImplementedError(f"backbone {self.name!r} cannot load prepared cases")

    def train(self, request: TrainRequest) -> TrainResult:
        """Train a strategy with the backbone's recipe; resume from a checkpoint in
        ``request.output_dir``; return at once when that folder holds a finished training."""
        raise NotImplementedError(f"backbone {self.name!r} cannot train")

    def load_model(self, request: ModelRequest) -> Any:
        """A finished training's model, frozen, in inference mode (e.g. a teacher)."""
        raise NotImplementedError(f"backbone {self.name!r} cannot load models")

    def predict(self, request: PredictRequest) -> dict[str, Path]:
        """Predict ``request.case_ids`` from the channels of ``request.available`` with the
        backbone's inference and write each as a NIfTI file in the source release's geometry
        and label values; returns case id -> written file."""
        raise NotImplementedError(f"backbone {self.name!r} cannot predict")

    def synthesise(self, request: SynthesisRequest) -> Any:
        """For a finished generator Job: an iterator of ``(case_id, synthesised, real, mask)``
        per case, the generator's point estimate of its missing channels, the real ones and
        the brain mask, as arrays in the backbone's preprocessed space (what the generator
        was trained on), for :mod:`kdbench.metrics.synthesis`."""
        raise NotImplementedError(f"backbone {self.name!r} cannot synthesise")

    def export(self, request: ExportRequest) -> dict[str, Any]:
        """Write a finished training (and the models it was built from) into ``request.dest``
        so that :meth:`predict_exported` can run it without ``runs/`` or the prepared dataset.

        The bytes must depend only on the training (the same Job exports byte-identical
        files). Returns a JSON-ready description recorded in the model's manifest, with
        ``weights``: the weights file of each node of the model tree, relative to ``dest``
        (``"model"`` and ``"<role>"``, ``"<role>/<role>"`` ... for its dependencies).
        """
        raise NotImplementedError(f"backbone {self.name!r} cannot export models")

    def predict_exported(self, request: ExportedPredictRequest) -> dict[str, Path]:
        """Predict new cases from their image files with an exported model: preprocess each
        exactly as the training data were, infer, and write the labels in the case's own
        geometry; returns case id -> written file."""
        raise NotImplementedError(f"backbone {self.name!r} cannot predict with exported models")
