"""Base classes of everything a plugin can register."""

from kdbench.components.backbone import Backbone, BackboneOptions
from kdbench.components.base import Component
from kdbench.components.dataset import Dataset, DatasetOptions
from kdbench.components.executor import Executor, ExecutorOptions, JobLauncher, JobState
from kdbench.components.generator import Generator
from kdbench.components.hparams import HParam, HParams, hparam
from kdbench.components.metric import Metric
from kdbench.components.reporter import Reporter, ReportSection
from kdbench.components.strategy import Strategy
from kdbench.components.teacher import Teacher
from kdbench.types import ModalityUse

__all__ = [
    "Backbone",
    "BackboneOptions",
    "Component",
    "Dataset",
    "DatasetOptions",
    "Executor",
    "ExecutorOptions",
    "Generator",
    "HParam",
    "HParams",
    "hparam",
    "JobLauncher",
    "JobState",
    "Metric",
    "ModalityUse",
    "ReportSection",
    "Reporter",
    "Strategy",
    "Teacher",
]
