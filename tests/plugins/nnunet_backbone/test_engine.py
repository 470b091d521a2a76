"""The nnU-Net engine on the phantom, on CPU: train 1- and 4-channel models, predict, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import ROOT

from kdbench.components.requests import ModelRequest, PredictRequest, TrainedModel, TrainRequest
from kdbench.modalities import MODALITIES
from kdbench.types import Budget, ModalityUse
from kdbench_plugins.nnunet_backbone import NnUNetBackbone, NnUNetOptions
from kdbench_plugins.nnunet_backbone.environment import VARIABLES


def _request(strategy, dataset, out, budget=None, seed=0, **kw):
    ids = list(dataset.cases)
    return TrainRequest(strategy=strategy, dataset=dataset, train_cases=tuple(ids[:6]),
                        val_cases=tuple(ids[6:8]), budget=budget or Budget(2, 2, 1),
                        options=NnUNetOptions(), output_dir=out, seed=seed, **kw)


def _first_conv(model):
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))


@pytest.mark.parametrize("modalities", [("t1ce",), MODALITIES], ids=["1-channel", "4-channel"])
def test_train_and_predict(prepared_phantom, registry, tmp_path, modalities):
    cls = registry.strategies.get("mono" if len(modalities) == 1 else "multi")
    strategy = cls({}, ModalityUse(modalities, (modalities,)))
    reports = []
    backbone = NnUNetBackbone()
    result = backbone.train(_request(strategy, prepared_phantom, tmp_path,
                                     callbacks=[reports.append]))
    assert result.checkpoint.exists() and result.epochs == 2
    assert [r.epoch for r in reports] == [0, 1]
    assert all(len(r.val_dice) == 3 and 0 <= r.mean_val_dice <= 1 for r in reports)
    assert result.history["lrs"] == pytest.approx([0.01, 0.01 * 0.5**0.9])
    assert not any(v in os.environ for v in VARIABLES)

    trained = TrainedModel(strategy, result.checkpoint)
    model = backbone.load_model(ModelRequest(trained=trained, dataset=prepared_phantom,
                                              options=NnUNetOptions()))
    assert _first_conv(model).in_channels == len(modalities)
    assert not any(p.requires_grad for p in model.parameters())

    # a finished training is found, not redone
    again = backbone.train(_request(strategy, prepared_phantom, tmp_path))
    assert again.checkpoint == result.checkpoint and again.resumed_from_epoch is None

    # predictions round-trip: the source's geometry, the source's label values
    cases = list(prepared_phantom.cases)[8:]
    written = backbone.predict(PredictRequest(
        trained=trained, dataset=prepared_phantom, options=NnUNetOptions(), case_ids=tuple(cases),
        available=tuple(modalities), out_dir=tmp_path / "pred"))
    source = prepared_phantom.marker["source"]
    for case, path in written.items():
        prediction = nib.load(path)
        reference = nib.load(f"{source}/{case}/{case}_t1.nii.gz")
        assert prediction.shape == reference.shape
        np.testing.assert_allclose(prediction.affine, reference.affine, atol=1e-4)
        assert set(np.unique(np.asanyarray(prediction.dataobj)).tolist()) <= {0, 1, 2, 4}


RESUME_SCRIPT = """
import sys
from pathlib import Path
from kdbench.types import ModalityUse
from kdbench.data.prepared import PreparedDataset
from kdbench.components.requests import TrainRequest
from kdbench.types import Budget
from kdbench.plugin_manager import load_plugins
from kdbench_plugins.nnunet_backbone import NnUNetOptions
from kdbench_plugins.nnunet_backbone.engine import train

if __name__ == "__main__":
    dataset = PreparedDataset.open(Path(sys.argv[1]))
    ids = list(dataset.cases)
    strategy = load_plugins(use_env=False).strategies.get("mono")(
        {}, ModalityUse(("flair",), (("flair",),)))
    train(TrainRequest(strategy, dataset, tuple(ids[:6]), tuple(ids[6:8]), Budget(4, 3, 1),
                       NnUNetOptions(), Path(sys.argv[2]), seed=3))
"""


def test_killed_training_resumes_to_the_same_final_state(prepared_phantom, registry, tmp_path):
    script = tmp_path / "train_job.py"
    script.write_text(textwrap.dedent(RESUME_SCRIPT))
    strategy = registry.strategies.get("mono")({}, ModalityUse(("flair",), (("flair",),)))
    budget = Budget(4, 3, 1)

    whole = NnUNetBackbone().train(_request(strategy, prepared_phantom, tmp_path / "whole",
                                            budget=budget, seed=3))

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(prepared_phantom.path),
                             str(killed_dir)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    latest = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(killed_dir.rglob("checkpoint_latest.pth"))
        if found:
            latest = found[0]
            time.sleep(0.5)  # let it get into the next epoch
            break
        time.sleep(0.1)
    assert proc.poll() is None, f"training ended before the kill: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest is not None and not list(killed_dir.rglob("checkpoint_final.pth"))

    resumed = NnUNetBackbone().train(_request(strategy, prepared_phantom, killed_dir,
                                              budget=budget, seed=3))
    assert resumed.resumed_from_epoch is not None and 1 <= resumed.resumed_from_epoch < 4
    a = torch.load(whole.checkpoint, map_location="cpu", weights_only=False)
    b = torch.load(resumed.checkpoint, map_location="cpu", weights_only=False)
    assert a["current_epoch"] == b["current_epoch"] == 4
    for name, tensor in a["network_weights"].items():
        assert torch.equal(tensor, b["network_weights"][name]), name
    # the whole loss curve, epochs before the kill included (restored from the checkpoint)
    losses = [[float(x) for x in r.history["train_losses"]] for r in (whole, resumed)]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_paired_batch_gives_each_tile_its_own_output():
    """A batch of one goes through as two copies; the output is the network's own for it (the
    same up to the kernel's rounding), deep-supervision lists included."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from kdbench_plugins.nnunet_backbone.engine import PairedBatchOnCpu

    torch.manual_seed(0)
    net = PlainConvUNet(2, 2, (8, 16), torch.nn.Conv3d, 3, (1, 2), 2, 3, (2,), True,
                        torch.nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None,
                        torch.nn.LeakyReLU, {"inplace": True}, deep_supervision=True).eval()
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.inference_mode():
        alone, paired = net(x), PairedBatchOnCpu(net)(x)
        assert isinstance(paired, list) and len(paired) == len(alone)
        for a, p in zip(alone, paired, strict=True):
            assert p.shape == a.shape
            torch.testing.assert_close(p, a, rtol=1e-4, atol=1e-4)
        two = torch.randn(2, 2, 8, 8, 8)  # larger batches pass through untouched
        torch.testing.assert_close(PairedBatchOnCpu(net)(two)[0], net(two)[0])
