"""Fidelity to nnU-Net, side by side: kdbench's `multi` baseline against nnU-Net's own trainer.

Both sides train on the prepared phantom, on CPU, with the same plans, budget, split and seed:
kdbench through ``engine.train`` (``KdbenchTrainer`` driven by the ``multi`` strategy), nnU-Net
with its own, unmodified ``nnUNetTrainer`` class (only the instance's budget attributes and
``do_split`` are set, as a user would). See docs/nnunet_fidelity.md for what is compared and why
the two runs are expected to be bitwise identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch.optim.optimizer import register_optimizer_step_post_hook

from kdbench.components.requests import TrainedModel, TrainRequest
from kdbench.modalities import MODALITIES
from kdbench.types import Budget, ModalityUse
from kdbench_plugins.multi import Multi
from kdbench_plugins.nnunet_backbone import NnUNetOptions, engine
from kdbench_plugins.nnunet_backbone.environment import NnUNetFolders, nnunet_environment
from kdbench_plugins.nnunet_backbone.trainer import KdbenchTrainer

EPOCHS, ITERATIONS, VAL_ITERATIONS, SEED = 3, 4, 2, 0
#: nnU-Net's default initial learning rate and its poly schedule, written out independently.
INITIAL_LR = 0.01
EXPECTED_LRS = [INITIAL_LR * (1 - epoch / EPOCHS) ** 0.9 for epoch in range(EPOCHS)]
#: Logger series that depend on the computation (timestamps do not).
SERIES = ("lrs", "train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice",
          "dice_per_class_or_region")


@contextmanager
def _optimizer_steps() -> Iterator[list[float]]:
    """Measure every optimizer step taken in the block: the learning rate it used."""
    steps: list[float] = []
    handle = register_optimizer_step_post_hook(
        lambda optimizer, args, kwargs: steps.append(optimizer.param_groups[0]["lr"]))
    try:
        yield steps
    finally:
        handle.remove()


def _split(dataset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ids = list(dataset.cases)
    return tuple(ids[:8]), tuple(ids[8:10])


def _train_kdbench(dataset, tmp_path, monkeypatch):
    """kdbench's 4-modality baseline through engine.train; the trainer is captured to inspect."""
    train, val = _split(dataset)
    captured: list[KdbenchTrainer] = []
    on_train_start = KdbenchTrainer.on_train_start

    def capture(self: KdbenchTrainer) -> None:
        captured.append(self)
        on_train_start(self)

    monkeypatch.setattr(KdbenchTrainer, "on_train_start", capture)
    strategy = Multi({}, ModalityUse(MODALITIES, (MODALITIES,)))
    reports = []
    request = TrainRequest(
        strategy=strategy, dataset=dataset, train_cases=train, val_cases=val,
        budget=Budget(epochs=EPOCHS, iterations_per_epoch=ITERATIONS,
                      val_iterations=VAL_ITERATIONS),
        options=NnUNetOptions(), output_dir=tmp_path / "kdbench", seed=SEED, data_workers=0,
        callbacks=[reports.append],
    )
    with _optimizer_steps() as steps:
        result = engine.train(request)
    model = engine.load_model(TrainedModel(strategy, result.checkpoint), dataset,
                              NnUNetOptions(), "cpu")
    return captured[0], result, reports, steps, model


def _train_nnunet(dataset, tmp_path):
    """nnU-Net's own nnUNetTrainer (the class untouched), same plans, budget, split and seed."""
    train, val = _split(dataset)
    plans, dataset_json, configuration = engine.load_plans(dataset, NnUNetOptions())
    plans["continue_training"] = False  # nnunetv2 2.8 pops this key
    summary = dataset.marker["backbone"]["summary"]
    backbone_folder = dataset.path / dataset.marker["backbone"]["name"]
    folders = NnUNetFolders(backbone_folder, summary["dataset_name"])
    with nnunet_environment(folders, results=tmp_path / "nnunet_side", nnUNet_n_proc_DA="0",
                            nnUNet_compile="f"):
        engine.seed_everything(SEED)  # right before the trainer is built, as engine.train does
        trainer = nnUNetTrainer(plans, configuration, 0, dataset_json, torch.device("cpu"))
        trainer.num_epochs = EPOCHS
        trainer.num_iterations_per_epoch = ITERATIONS
        trainer.num_val_iterations_per_epoch = VAL_ITERATIONS
        # the instance, not the class: nnU-Net's own code runs, on kdbench's split
        trainer.do_split = lambda: (list(train), list(val))
        with _optimizer_steps() as steps:
            trainer.run_training()
    return trainer, steps


def test_kdbench_multi_matches_nnunet_trainer(prepared_phantom, tmp_path, monkeypatch):
    ours, result, reports, our_steps, model = _train_kdbench(prepared_phantom, tmp_path,
                                                              monkeypatch)
    theirs, their_steps = _train_nnunet(prepared_phantom, tmp_path)
    assert type(theirs) is nnUNetTrainer and type(ours) is KdbenchTrainer

    # the same data: training and validation cases, batch size, patch size
    def seen(trainer) -> dict:
        train_loader = trainer.dataloader_train.data_loader
        val_loader = trainer.dataloader_val.data_loader
        return {"train": sorted(train_loader.indices), "val": sorted(val_loader.indices),
                "batch_size": (trainer.batch_size, train_loader.batch_size,
                               val_loader.batch_size),
                "patch_size": (list(trainer.configuration_manager.patch_size),
                               list(train_loader.final_patch_size),
                               list(val_loader.final_patch_size))}

    train, val = _split(prepared_phantom)
    assert seen(ours) == seen(theirs)
    assert seen(theirs)["train"] == sorted(train) and seen(theirs)["val"] == sorted(val)

    # (1) the same network: module structure, parameter count, every parameter's name and shape
    network = theirs.network
    assert str(model) == str(network)
    assert str(ours.network) == str(network)
    count = sum(p.numel() for p in network.parameters())
    assert sum(p.numel() for p in model.parameters()) == count
    assert ({n: tuple(p.shape) for n, p in model.named_parameters()}
            == {n: tuple(p.shape) for n, p in network.named_parameters()})

    # (2) the same number of optimizer steps, measured (a hook on every optimizer.step)
    assert len(our_steps) == len(their_steps) == EPOCHS * ITERATIONS

    # (3) the same learning-rate schedule: the rate of every step and of every epoch, equal on
    # both sides and to nnU-Net's poly formula written out above
    their_history = theirs.logger.get_checkpoint()
    assert our_steps == their_steps
    assert result.history["lrs"] == their_history["lrs"]
    assert their_steps == pytest.approx([lr for lr in EXPECTED_LRS for _ in range(ITERATIONS)],
                                        rel=1e-12)
    assert their_history["lrs"] == pytest.approx(EXPECTED_LRS, rel=1e-12)
    assert [r.learning_rate for r in reports] == pytest.approx(EXPECTED_LRS, rel=1e-12)

    # (4) final validation pseudo-Dice. Same seed, same random draws in the same order (network
    # init, then data-loader sampling and augmentation in the main process), CPU float32
    # without AMP, same process and thread count: the two runs are bitwise identical, so the
    # tolerance between the two trainers is zero; kdbench's EpochReport passes nnU-Net's
    # logged mean on to the callbacks unchanged.
    ours_dice = float(result.history["mean_fg_dice"][-1])
    their_dice = float(their_history["mean_fg_dice"][-1])
    assert ours_dice == their_dice
    assert reports[-1].mean_val_dice == their_dice
    for key in SERIES:
        assert np.array_equal(np.asarray(result.history[key], dtype=float),
                              np.asarray(their_history[key], dtype=float)), key
    # and so are the trained weights
    theirs_weights = network.state_dict()
    assert model.state_dict().keys() == theirs_weights.keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, theirs_weights[name]), name
    print(f"\nparameters {count}; steps {len(our_steps)}; lrs {result.history['lrs']}; "
          f"mean Dice kdbench {ours_dice!r} nnU-Net {their_dice!r}")
