"""Networks from nnU-Net plans: PlainConvUNet by default, ResEnc M/L selectable, any channels."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from kdbench_plugins.nnunet_backbone import NnUNetOptions
from kdbench_plugins.nnunet_backbone.engine import load_plans
from kdbench_plugins.nnunet_backbone.environment import (
    DATASET_ID,
    NnUNetFolders,
    nnunet_environment,
)
from kdbench_plugins.nnunet_backbone.preprocess import planner_class


def _build(plans, dataset_json, configuration, channels):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    labels = manager.get_label_manager(dataset_json)
    return nnUNetTrainer.build_network_architecture(
        manager, manager.get_configuration(configuration), channels,
        labels.num_segmentation_heads, True)


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_default_plans_give_plain_conv_unet(prepared_phantom, channels):
    plans, dataset_json, configuration = load_plans(prepared_phantom, NnUNetOptions())
    network = _build(plans, dataset_json, configuration, channels)
    assert type(network).__name__ == "PlainConvUNet"
    patch = plans["configurations"][configuration]["patch_size"]
    outputs = network(torch.zeros(1, channels, *patch))
    assert outputs[0].shape == (1, 3, *patch)  # three region heads, deep supervision on


@pytest.mark.parametrize(("planner", "expected"), [("ResEncM", "nnUNetResEncUNetMPlans"),
                                                    ("ResEncL", "nnUNetResEncUNetLPlans")])
def test_resenc_planners(prepared_phantom, tmp_path, planner, expected):
    """Plan the phantom's fingerprint with a ResEnc preset (in a copy) and build its network."""
    source = NnUNetFolders(prepared_phantom.path / "nnunet",
                           prepared_phantom.marker["backbone"]["summary"]["dataset_name"])
    copy = NnUNetFolders(tmp_path, source.dataset_name)
    copy.raw_dataset.mkdir(parents=True)
    copy.preprocessed_dataset.mkdir(parents=True)
    shutil.copy(source.raw_dataset / "dataset.json", copy.raw_dataset)
    for folder in ("imagesTr", "labelsTr"):  # read for the image reader, never written
        (copy.raw_dataset / folder).symlink_to(source.raw_dataset / folder)
    for name in ("dataset_fingerprint.json", "dataset.json"):
        shutil.copy(source.preprocessed_dataset / name, copy.preprocessed_dataset)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset

    with nnunet_environment(copy):
        plans, identifier = plan_experiment_dataset(DATASET_ID, planner_class(planner))
    assert identifier == expected
    config = plans["configurations"]["3d_fullres"]
    assert config["data_identifier"] == "nnUNetPlans_3d_fullres"  # same preprocessed data
    dataset_json = json.loads((copy.preprocessed_dataset / "dataset.json").read_text())
    network = _build(plans, dataset_json, "3d_fullres", 1)
    assert type(network).__name__ == "ResidualEncoderUNet"
    first = next(m for m in network.modules() if isinstance(m, torch.nn.Conv3d))
    assert first.in_channels == 1


def test_protocol_overrides_of_patch_batch_and_features(prepared_phantom):
    """The CPU-demo overrides land in the plans the network is built from."""
    from kdbench.errors import KdbenchError

    base, _, configuration = load_plans(prepared_phantom, NnUNetOptions())
    stages = base["configurations"][configuration]["architecture"]["arch_kwargs"]["n_stages"]
    features = tuple(8 * 2**i for i in range(stages))
    strides = base["configurations"][configuration]["architecture"]["arch_kwargs"]["strides"]
    total = [int(torch.tensor([s[a] for s in strides]).prod()) for a in range(3)]
    patch = tuple(2 * t for t in total)
    options = NnUNetOptions(patch_size=patch, batch_size=3, features_per_stage=features)
    plans, dataset_json, configuration = load_plans(prepared_phantom, options)
    config = plans["configurations"][configuration]
    assert config["patch_size"] == list(patch) and config["batch_size"] == 3
    network = _build(plans, dataset_json, configuration, 1)
    first_conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.out_channels == features[0]
    assert network(torch.zeros(1, 1, *patch))[0].shape == (1, 3, *patch)
    with pytest.raises(KdbenchError, match=f"has 2 values but the planned network has {stages}"):
        load_plans(prepared_phantom, NnUNetOptions(features_per_stage=(8, 16)))
    with pytest.raises(KdbenchError, match="must be divisible by the network's total stride"):
        load_plans(prepared_phantom, NnUNetOptions(patch_size=tuple(t + 1 for t in total)))
