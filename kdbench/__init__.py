"""kdbench: strategies for brain-tumour segmentation with missing MRI modalities, compared
under one protocol on nnU-Net.

The public surface for plugin authors is importable from here::

    from kdbench import hookimpl, Strategy, HParam

Importing this package loads no plugin and no heavy library (torch, monai, nnunetv2, mlflow).
"""

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
    JobLauncher,
    JobState,
    Metric,
    ModalityPlan,
    Reporter,
    ReportSection,
    Strategy,
    Teacher,
)
from kdbench.errors import KdbenchError, PluginError, ProtocolError
from kdbench.hookspecs import hookimpl
from kdbench.version import __version__

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
    "JobLauncher",
    "JobState",
    "KdbenchError",
    "Metric",
    "ModalityPlan",
    "PluginError",
    "ProtocolError",
    "ReportSection",
    "Reporter",
    "Strategy",
    "Teacher",
    "__version__",
    "hookimpl",
]
