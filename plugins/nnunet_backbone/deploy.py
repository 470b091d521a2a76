"""Exported nnU-Net models: a Job's weights, plans and preprocessing, outside ``runs/``.

**Export** writes, into the folder the core gives it:

- ``plans.json`` (the plans the Job trained with, the protocol's patch, batch and feature
  overrides applied), ``dataset.json`` and ``dataset_fingerprint.json``: what nnU-Net's
  preprocessing and exporter need;
- ``backbone.json``: the configuration and test-time mirroring;
- ``model/weights.safetensors``, and ``model/<role>/weights.safetensors`` for each model it was
  built from (a teacher, a generator), recursively: tensors only, nothing to unpickle.

**Prediction** preprocesses each new case with nnU-Net's own preprocessor of that
configuration (crop to the non-zero region, the plans' per-channel normalisation, resampling to
the plans' spacing), from the plans narrowed to the channels the model reads, then predicts
with the same sliding-window predictor as a Job's test cases and exports each prediction to the
case's own geometry. A case whose images are exactly those of a prepared case (and whose
modalities share one non-zero region, as skull-stripped BraTS images do) gets the same labels
as the Job's own prediction of it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from kdbench import ExportedPredictRequest, ExportRequest, TrainedModel
from kdbench.modalities import MODALITIES, channel_indices
from kdbench_plugins.nnunet_backbone.engine import (
    load_plans,
    model_weights,
    prepared_folders,
    sliding_window_predictor,
    source_labels,
    write_prediction,
)

PLANS, DATASET_JSON, FINGERPRINT, SETTINGS = ("plans.json", "dataset.json",
                                              "dataset_fingerprint.json", "backbone.json")
WEIGHTS = "weights.safetensors"
#: The model tree's root folder; a dependency lives in ``<parent>/<role>``.
ROOT = "model"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def export(request: ExportRequest) -> dict[str, Any]:
    """Write the model tree's weights and what preprocessing needs into ``request.dest``."""
    from safetensors.torch import save_file

    dest = Path(request.dest)
    plans, dataset_json, configuration = load_plans(request.dataset, request.options)
    folders, _ = prepared_folders(request.dataset)
    _write_json(dest / PLANS, plans)
    _write_json(dest / DATASET_JSON, dataset_json)
    _write_json(dest / FINGERPRINT,
                json.loads((folders.preprocessed_dataset / FINGERPRINT).read_text()))
    _write_json(dest / SETTINGS, {"configuration": configuration,
                                  "mirroring": bool(request.options.mirroring)})
    weights: dict[str, str] = {}

    def write(node: TrainedModel, rel: str) -> None:
        state = model_weights(Path(node.checkpoint), "cpu")
        # own, contiguous copies: safetensors refuses views and shared storage
        tensors = {k: v.detach().clone().contiguous() for k, v in sorted(state.items())}
        path = dest / rel / WEIGHTS
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path))
        weights[rel] = f"{rel}/{WEIGHTS}"
        for role, dependency in sorted(node.dependencies.items()):
            write(dependency, f"{rel}/{role}")

    write(request.trained, ROOT)
    return {"configuration": configuration, "weights": weights,
            "files": [PLANS, DATASET_JSON, FINGERPRINT, SETTINGS]}


def narrowed_plans(plans: dict, dataset_json: dict, channels: list[int]) -> tuple[dict, dict]:
    """Plans and dataset.json for the image files of ``channels`` only (their normalisation,
    intensity properties and names, renumbered from 0), as nnU-Net's preprocessor reads them."""
    plans, dataset_json = copy.deepcopy(plans), copy.deepcopy(dataset_json)
    props = plans.get("foreground_intensity_properties_per_channel", {})
    if props:
        plans["foreground_intensity_properties_per_channel"] = {
            str(i): props[str(c)] for i, c in enumerate(channels)}
    for config in plans["configurations"].values():
        for key in ("normalization_schemes", "use_mask_for_norm"):
            if key in config:
                config[key] = [config[key][c] for c in channels]
    names = dataset_json["channel_names"]
    dataset_json["channel_names"] = {str(i): names[str(c)] for i, c in enumerate(channels)}
    return plans, dataset_json


def predict_exported(request: ExportedPredictRequest) -> dict[str, Path]:
    """Preprocess, predict and export each case of ``request.cases``."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(request.folder)
    settings = json.loads((folder / SETTINGS).read_text())
    channels = list(channel_indices(request.available))
    plans, dataset_json = narrowed_plans(json.loads((folder / PLANS).read_text()),
                                         json.loads((folder / DATASET_JSON).read_text()),
                                         channels)
    configuration = settings["configuration"]
    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)
    predictor = sliding_window_predictor(request.trained, (plans, dataset_json, configuration),
                                         request.available, settings["mirroring"],
                                         request.device)
    preprocessor = config.preprocessor_class(verbose=False)
    to_source = source_labels(request.label_convention)
    out_dir = Path(request.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = [m for m in MODALITIES if m in request.available]
    written: dict[str, Path] = {}
    for case_id, files in request.cases.items():
        data, _, properties = preprocessor.run_case(
            [str(files[m]) for m in ordered], None, manager, config, dataset_json)
        written[case_id] = write_prediction(predictor, torch.from_numpy(data), properties,
                                            out_dir / case_id, to_source)
        if request.progress is not None:
            request.progress(case_id)
    return written
