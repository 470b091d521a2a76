"""Backbones: the network family and training recipe every strategy runs on."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from kdbench.components.base import Component


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
