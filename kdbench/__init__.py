"""kdbench: strategies for brain-tumour segmentation with missing MRI modalities, compared
under one protocol on nnU-Net.

The public surface for plugin authors is importable from here::

    from kdbench import hookimpl, Strategy, HParams, hparam, TrainingStep, BuildContext
    from kdbench import TrainRequest

Importing this package loads no plugin and no heavy library (torch, monai, nnunetv2, mlflow).
"""

from kdbench.cases import CaseFiles, Problem, Release
from kdbench.components import (
    Backbone,
    BackboneOptions,
    Component,
    Dataset,
    DatasetOptions,
    Executor,
    ExecutorOptions,
    Generator,
    HParam,
    HParams,
    JobLauncher,
    JobState,
    Metric,
    Reporter,
    ReportSection,
    Strategy,
    Teacher,
    hparam,
)
from kdbench.components.requests import (
    ExportedPredictRequest,
    ExportRequest,
    ModelRequest,
    PredictRequest,
    SynthesisRequest,
    TrainedModel,
    TrainRequest,
    TrainResult,
)
from kdbench.components.strategy import BuildContext, SettingsContext, StepBatch, TrainingStep
from kdbench.errors import KdbenchError, PluginError, ProtocolError
from kdbench.hookspecs import hookimpl
from kdbench.types import Budget, EpochReport, Job, JobSpec, Modalities, ModalityUse, Plan
from kdbench.version import __version__

__all__ = [
    "Backbone",
    "BackboneOptions",
    "Budget",
    "BuildContext",
    "CaseFiles",
    "Component",
    "Dataset",
    "DatasetOptions",
    "EpochReport",
    "Executor",
    "ExecutorOptions",
    "ExportRequest",
    "ExportedPredictRequest",
    "Generator",
    "HParam",
    "HParams",
    "Job",
    "JobLauncher",
    "JobSpec",
    "JobState",
    "KdbenchError",
    "Metric",
    "Modalities",
    "ModalityUse",
    "ModelRequest",
    "Plan",
    "PluginError",
    "PredictRequest",
    "Problem",
    "ProtocolError",
    "Release",
    "ReportSection",
    "Reporter",
    "SettingsContext",
    "StepBatch",
    "Strategy",
    "SynthesisRequest",
    "Teacher",
    "TrainRequest",
    "TrainingStep",
    "TrainResult",
    "TrainedModel",
    "__version__",
    "hookimpl",
    "hparam",
]
