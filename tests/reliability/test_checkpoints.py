"""Checkpoints: read with ``weights_only=True`` (a pickle that would run code is refused, the
code never runs), the same entries as nnU-Net's own, a round trip that restores the trainer,
and atomic writes (a full disk or a read-only folder: one message naming the file, the previous
checkpoint intact, no temporary file left)."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess

import numpy as np
import pytest
import torch
from reliability.grid import tmpfs

from kdbench.components.requests import TrainedModel, TrainRequest
from kdbench.errors import KdbenchError
from kdbench.types import Budget, ModalityUse
from kdbench_plugins.nnunet_backbone import NnUNetOptions
from kdbench_plugins.nnunet_backbone.checkpoint import load_checkpoint_file

OPTIONS = NnUNetOptions(features_per_stage=(8, 16, 32), patch_size=(16, 16, 16))
REFUSED = "holds objects other than tensors, numbers and numpy arrays"


class Payload:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": {}, "current_epoch": 1, "init_args": Payload(marker)}, path)
    return path


def _mono(registry):
    return registry.strategies.get("mono")({}, ModalityUse(("t1ce",), (("t1ce",),)))


def _trainer(dataset, registry, results, seed=0):
    """A configured, initialised trainer (network and optimizer built, nothing trained)."""
    from kdbench_plugins.nnunet_backbone.engine import _trainer, prepared_folders
    from kdbench_plugins.nnunet_backbone.environment import nnunet_environment
    from kdbench_plugins.nnunet_backbone.trainer import TrainerSettings

    torch.manual_seed(seed)
    ids = list(dataset.cases)
    with nnunet_environment(prepared_folders(dataset)[0], results=results), \
            contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
        trainer = _trainer(dataset, OPTIONS, "cpu", continue_training=True)
        trainer.configure(TrainerSettings(_mono(registry), ids[:6], ids[6:8], 2, 2, 1))
        trainer.initialize()
    return trainer


def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    path = _malicious(tmp_path / "checkpoint_final.pth", marker)
    with pytest.raises(KdbenchError, match=f"checkpoint {path} {REFUSED}.*could run code"):
        load_checkpoint_file(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what nnU-Net's own loader would have done
    assert marker.exists()


def test_the_engine_refuses_them_when_resuming_and_loading(prepared_phantom, registry,
                                                           tmp_path):
    from kdbench_plugins.nnunet_backbone.engine import load_model, train

    summary = prepared_phantom.marker["backbone"]["summary"]
    fold = (tmp_path / "job" / "nnunet" / summary["dataset_name"]
            / f"KdbenchTrainer__{summary['plans_identifier']}__{summary['configuration']}"
            / "fold_0")
    marker = tmp_path / "ran"
    ids = list(prepared_phantom.cases)
    request = TrainRequest(_mono(registry), prepared_phantom, tuple(ids[:6]), tuple(ids[6:8]),
                           Budget(2, 2, 1), OPTIONS, tmp_path / "job", seed=0)
    latest = _malicious(fold / "checkpoint_latest.pth", marker)
    with pytest.raises(KdbenchError, match=f"checkpoint {latest} {REFUSED}"):
        train(request)  # a resume reads the latest checkpoint
    final = _malicious(fold / "checkpoint_final.pth", marker)
    with pytest.raises(KdbenchError, match=f"checkpoint {final} {REFUSED}"):
        train(request)  # a finished training reads its epoch count from the final one
    with pytest.raises(KdbenchError, match=f"checkpoint {final} {REFUSED}"):
        load_model(TrainedModel(_mono(registry), final), prepared_phantom, OPTIONS, "cpu")
    assert not marker.exists()


def test_checkpoint_round_trip_and_nnunet_entries(prepared_phantom, registry, tmp_path):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    saved = _trainer(prepared_phantom, registry, tmp_path / "a", seed=0)
    saved.current_epoch = 3
    saved._best_ema = np.float32(0.25)
    saved.logger.log("train_losses", np.float32(0.5), 0)
    random.seed(7)
    state = random.getstate()
    path = tmp_path / "checkpoint_latest.pth"
    saved.save_checkpoint(str(path))
    # the entries nnU-Net's own save_checkpoint writes, plus kdbench's random states
    nnUNetTrainer.save_checkpoint(saved, str(tmp_path / "theirs.pth"))
    theirs = torch.load(tmp_path / "theirs.pth", weights_only=False)  # written by this test
    ours = load_checkpoint_file(path)
    assert set(ours) == set(theirs) | {"kdbench_rng"}

    loaded = _trainer(prepared_phantom, registry, tmp_path / "b", seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(
        saved.network.state_dict().values(), loaded.network.state_dict().values(),
        strict=True))  # other initial weights, so the comparison below means something
    loaded.load_checkpoint(str(path))
    for name, tensor in saved.network.state_dict().items():
        assert torch.equal(tensor, loaded.network.state_dict()[name]), name
    assert loaded.current_epoch == 4 and loaded._best_ema == np.float32(0.25)
    assert loaded.logger.get_checkpoint()["train_losses"] == [np.float32(0.5)]
    assert loaded.optimizer.state_dict()["param_groups"] == \
        saved.optimizer.state_dict()["param_groups"]
    assert loaded._pending_rng["python"] == state
    assert loaded.my_init_kwargs["fold"] == saved.my_init_kwargs["fold"]


def test_full_disk_and_read_only_folder_keep_the_previous_checkpoint(prepared_phantom,
                                                                     registry, tmp_path):
    trainer = _trainer(prepared_phantom, registry, tmp_path / "results")
    with tmpfs(tmp_path / "disk", "4m") as disk:
        path = disk / "checkpoint_latest.pth"
        trainer.save_checkpoint(str(path))
        before = path.read_bytes()
        # fill the disk
        with contextlib.suppress(OSError), open(disk / "filler", "wb", buffering=0) as filler:
            while True:
                filler.write(b"\0" * 65536)
        trainer.current_epoch += 1
        with pytest.raises(KdbenchError, match=rf"cannot write checkpoint {path}: No space left "
                           r"on device \(the previous one is intact\); free disk space"):
            trainer.save_checkpoint(str(path))
        assert path.read_bytes() == before and sorted(p.name for p in disk.iterdir()) == [
            "checkpoint_latest.pth", "filler"]
        (disk / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(KdbenchError, match=rf"cannot write checkpoint {path}: Read-only "
                           "file system"):
            trainer.save_checkpoint(str(path))
        assert path.read_bytes() == before
        assert load_checkpoint_file(path)["current_epoch"] == 1  # still whole
