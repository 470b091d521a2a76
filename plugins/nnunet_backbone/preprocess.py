"""nnU-Net's fingerprinting, planning and preprocessing, through its Python API.

Run once per prepared dataset, for all strategies: every strategy then reads the same
preprocessed bytes (a strategy that sees fewer modalities selects channels, it never
re-preprocesses).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from kdbench_plugins.nnunet_backbone.environment import (
    DATASET_ID,
    NnUNetFolders,
    nnunet_environment,
)

#: ``backbone.options.planner`` -> nnU-Net planner class (module, name).
PLANNERS = {
    "default": ("nnunetv2.experiment_planning.experiment_planners.default_experiment_planner",
                "ExperimentPlanner"),
    "ResEncM": ("nnunetv2.experiment_planning.experiment_planners.residual_unets."
                "residual_encoder_unet_planners", "nnUNetPlannerResEncM"),
    "ResEncL": ("nnunetv2.experiment_planning.experiment_planners.residual_unets."
                "residual_encoder_unet_planners", "nnUNetPlannerResEncL"),
}


def planner_class(planner: str) -> type:
    """The nnU-Net planner class for a ``planner`` option (instantiated, never looked up by
    name through nnU-Net's class search, which needs an importable torchvision)."""
    import importlib

    module, name = PLANNERS[planner]
    return getattr(importlib.import_module(module), name)


def plan_and_preprocess(
    folders: NnUNetFolders, planner: str, configuration: str, num_processes: int
) -> dict[str, Any]:
    """Fingerprint, plan and preprocess the raw dataset in ``folders``.

    Args:
        folders: nnU-Net folders holding the raw dataset.
        planner: ``default``, ``ResEncM`` or ``ResEncL``.
        configuration: the configuration to preprocess (``3d_fullres``, ``2d``, ``3d_lowres``).
        num_processes: worker processes for fingerprinting and preprocessing.

    Returns:
        A summary: plans identifier, plans file, configuration, patch size, spacing, the
        preprocessed folder (relative to ``folders.root``) and nnU-Net's version.
    """
    from importlib.metadata import version

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    log = io.StringIO()
    with nnunet_environment(folders), contextlib.redirect_stdout(log):
        extract_fingerprint_dataset(
            DATASET_ID, num_processes=num_processes, check_dataset_integrity=False,
            clean=True, verbose=False, show_progress_bar=False,
        )
        plans, identifier = plan_experiment_dataset(DATASET_ID, planner_class(planner))
        preprocess_dataset(
            DATASET_ID, identifier, configurations=(configuration,),
            num_processes=(num_processes,), verbose=False, show_progress_bar=False,
        )
    config = plans["configurations"].get(configuration)
    if config is None:
        raise RuntimeError(
            f"nnU-Net planned no {configuration!r} configuration for this dataset "
            f"(planned: {sorted(plans['configurations'])})"
        )
    data_folder = folders.preprocessed_dataset / config["data_identifier"]
    return {
        "nnunet_version": version("nnunetv2"),
        "plans_identifier": identifier,
        "plans_file": str((folders.preprocessed_dataset / f"{identifier}.json")
                          .relative_to(folders.root)),
        "configuration": configuration,
        "patch_size": list(config["patch_size"]),
        "batch_size": config["batch_size"],
        "spacing": list(config["spacing"]),
        "data_folder": str(data_folder.relative_to(folders.root)),
        "cases": len(list(data_folder.glob("*.pkl"))),
    }
