"""The ``foundation`` teacher: safe loading of local checkpoints and MONAI bundles, channel and
region permutations against the MONAI network itself, refusals, few-shot fine-tuning through
nnU-Net's trainer, and its place in a plan."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from monai.networks.nets import SegResNet, SwinUNETR
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from safetensors.torch import save_file

from kdbench.components.requests import ModelRequest, PredictRequest, TrainedModel, TrainRequest
from kdbench.components.strategy import BuildContext, StepBatch, TrainingStep
from kdbench.errors import KdbenchError
from kdbench.modalities import MODALITIES
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol
from kdbench.types import Budget
from kdbench_plugins.foundation import FoundationTeacher
from kdbench_plugins.kd import KnowledgeDistillation, binary_kl
from kdbench_plugins.nnunet_backbone.engine import full_resolution_only

TINY = {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1], "in_channels": 4,
        "out_channels": 3}
#: the MONAI brats_mri_segmentation bundle's orders
BUNDLE_ORDERS = {"channel_order": "t1ce,t1,t2,flair", "output_order": "TC,WT,ET"}
#: kdbench channel of each checkpoint channel; checkpoint output of each kdbench region
TO_CHECKPOINT_INPUTS, TO_KDBENCH_OUTPUTS = [1, 0, 2, 3], [1, 0, 2]


def _reference(seed: int = 0, **kwargs) -> SegResNet:
    torch.manual_seed(seed)
    return SegResNet(**{**TINY, **kwargs}).eval()


def _teacher(**overrides) -> FoundationTeacher:
    hparams = FoundationTeacher.resolve_hparams(overrides)
    return FoundationTeacher(hparams, FoundationTeacher.teacher_use(MODALITIES))


def _context(for_training: bool = True, **kwargs) -> BuildContext:
    return BuildContext(**{"network": lambda *a, **k: None, "supervised_loss": None,
                           "num_outputs": 3, "device": torch.device("cpu"),
                           "for_training": for_training, **kwargs})


def _build(for_training: bool = True, **overrides):
    return _teacher(**overrides).build(_context(for_training))


def _save(kind: str, network: torch.nn.Module, root) -> tuple[str, str]:
    """Write ``network``'s weights as ``kind``; the checkpoint hparam and the architecture."""
    weights = network.state_dict()
    if kind == "pt":
        torch.save(weights, root / "w.pt")
        return str(root / "w.pt"), "segresnet"
    if kind == "nested":  # a training checkpoint: DataParallel keys under "state_dict"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in weights.items()}},
                   root / "w.pth")
        return str(root / "w.pth"), "segresnet"
    if kind == "safetensors":
        save_file({k: v.contiguous() for k, v in weights.items()}, root / "w.safetensors")
        return str(root / "w.safetensors"), "segresnet"
    bundle = root / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    config = {"imports": ["$import os"], "bundle_root": ".", "device": "$torch.device('cpu')",
              "network_def": {"_target_": "SegResNet", **TINY},
              "network": "$@network_def.to(@device)"}
    if kind == "bundle":  # as MONAI's model zoo ships them: JSON config, model.pt
        (bundle / "configs" / "inference.json").write_text(json.dumps(config))
        torch.save(weights, bundle / "models" / "model.pt")
    else:  # YAML config, safetensors weights
        (bundle / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
        save_file({k: v.contiguous() for k, v in weights.items()},
                  bundle / "models" / "model.safetensors")
    return str(bundle), "bundle"


# -- loading, against the MONAI network itself --------------------------------------------------


@pytest.mark.parametrize("kind", ["pt", "nested", "safetensors", "bundle", "bundle_yaml"])
def test_each_format_loads_and_permutes_as_the_monai_network(tmp_path, kind):
    reference = _reference()
    checkpoint, architecture = _save(kind, reference, tmp_path)
    model = _build(checkpoint=checkpoint, architecture=architecture,
                   network_kwargs=json.dumps(TINY), **BUNDLE_ORDERS).eval()
    x = torch.randn(2, 4, 16, 16, 16)  # kdbench's order: t1, t1ce, t2, flair
    with torch.no_grad():
        expected = reference(x[:, TO_CHECKPOINT_INPUTS])[:, TO_KDBENCH_OUTPUTS]
        ds = model(x)
        full_resolution_only(model)  # what kdbench's inference does
        plain = model(x)
    assert isinstance(ds, list) and len(ds) == 1  # deep supervision on: [logits]
    torch.testing.assert_close(ds[0], expected, rtol=0, atol=0)
    assert isinstance(plain, torch.Tensor)
    torch.testing.assert_close(plain, expected, rtol=0, atol=0)
    # every pretrained tensor is in the model, under network.
    own = model.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(own[f"network.{key}"], value)


def test_identity_orders_and_swinunetr(tmp_path):
    torch.manual_seed(1)
    kwargs = {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
              "window_size": 4, "norm_name": "batch"}  # eval-mode batch norm: 1³ bottleneck
    reference = SwinUNETR(in_channels=4, out_channels=3, **kwargs).eval()
    torch.save(reference.state_dict(), tmp_path / "swin.pt")
    model = _build(checkpoint=str(tmp_path / "swin.pt"), architecture="swinunetr",
                   network_kwargs=json.dumps(kwargs)).eval()
    full_resolution_only(model)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_a_finished_job_is_rebuilt_without_reading_the_pretrained_file(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    for checkpoint in (tmp_path / "garbage.pt", tmp_path / "moved_away.pt"):
        model = _build(for_training=False, checkpoint=str(checkpoint),
                       network_kwargs=json.dumps(TINY), checkpoint_sha256="0" * 64)
        assert set(model.state_dict()) == {f"network.{k}" for k in _reference().state_dict()}
    with pytest.raises(KdbenchError, match="not a readable PyTorch checkpoint"):
        _build(checkpoint=str(tmp_path / "garbage.pt"), network_kwargs=json.dumps(TINY))


# -- refusals -----------------------------------------------------------------------------------

UNPICKLED: list[str] = []


class Payload:
    """An arbitrary object: unpickling it would run its ``__setstate__``."""

    def __init__(self) -> None:
        self.note = "arbitrary"

    def __setstate__(self, state) -> None:
        UNPICKLED.append("ran")


def test_a_pickle_of_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": _reference().state_dict(), "extra": Payload()}, path)
    refused = r"refused to load .*pickled\.pt.*weights_only=True.*Unsupported global.*Payload"
    with pytest.raises(KdbenchError, match=refused):
        _build(checkpoint=str(path), network_kwargs=json.dumps(TINY))
    assert UNPICKLED == []


def test_sha256_is_checked(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_reference().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _build(checkpoint=str(path), network_kwargs=json.dumps(TINY), checkpoint_sha256=digest)
    with pytest.raises(KdbenchError, match=f"has sha256 {digest}, not the checkpoint_sha256"):
        _build(checkpoint=str(path), network_kwargs=json.dumps(TINY),
               checkpoint_sha256="ab" * 32)


def test_missing_or_unset_checkpoint_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KdbenchError) as error:
        _build(checkpoint="weights/none.pt")
    message = str(error.value)
    assert str(tmp_path / "weights" / "none.pt") in message
    assert "relative paths resolve against the working directory" in message
    with pytest.raises(KdbenchError, match=r"set `teacher_hparams: \{checkpoint: PATH\}`"):
        _build()


def test_mismatched_keys_are_named(tmp_path):
    weights = _reference().state_dict()
    dropped = next(iter(weights))
    weights.pop(dropped)
    weights["head.extra"] = torch.zeros(1)
    path = tmp_path / "other.pt"
    torch.save(weights, path)
    with pytest.raises(KdbenchError) as error:
        _build(checkpoint=str(path), network_kwargs=json.dumps(TINY))
    message = str(error.value)
    assert str(path) in message and dropped in message and "head.extra" in message
    # a network of another width: the shapes are named
    torch.save(_reference(init_filters=16).state_dict(), path)
    with pytest.raises(KdbenchError, match="shape mismatches"):
        _build(checkpoint=str(path), network_kwargs=json.dumps(TINY))


def test_bad_settings_fail_clearly(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_reference().state_dict(), path)
    with pytest.raises(KdbenchError, match="is a directory"):
        _build(checkpoint=str(tmp_path))
    with pytest.raises(KdbenchError, match="needs a MONAI bundle directory"):
        _build(checkpoint=str(path), architecture="bundle")
    with pytest.raises(KdbenchError, match="output_order"):
        _build(checkpoint=str(path), output_order="WT,TC")
    with pytest.raises(KdbenchError, match="unknown modality"):
        _build(checkpoint=str(path), channel_order="t1,t1ce,t2,dwi")
    with pytest.raises(KdbenchError, match="network_kwargs is not JSON"):
        _build(checkpoint=str(path), network_kwargs="{init_filters: 8}")
    with pytest.raises(KdbenchError, match="in_channels=2 but channel_order names 4"):
        _build(checkpoint=str(path), network_kwargs=json.dumps({**TINY, "in_channels": 2}))
    teacher = FoundationTeacher(FoundationTeacher.resolve_hparams({"checkpoint": str(path)}),
                                FoundationTeacher.teacher_use(("t1", "t1ce", "t2")))
    with pytest.raises(KdbenchError, match="reads flair .* trains on t1, t1ce, t2 only"):
        teacher.build(_context())


# -- training semantics -------------------------------------------------------------------------


def test_few_shot_cases_and_budget():
    cases = tuple(f"case_{i}" for i in range(6))
    assert _teacher(few_shot_k=3).training_cases(cases) == cases[:3]
    assert _teacher(few_shot_k=0).training_cases(cases) == cases
    assert _teacher(few_shot_k=10).training_cases(cases) == cases  # k >= N: all N
    budget = Budget(20, 25, 2)
    assert _teacher().training_budget(budget) == replace(budget, initial_lr=1e-4)
    tuned = _teacher(fine_tune_lr=3e-3, fine_tune_epochs=5).training_budget(budget)
    assert (tuned.epochs, tuned.initial_lr, tuned.iterations_per_epoch) == (5, 3e-3, 25)


def test_training_loss_is_the_plain_full_resolution_loss():
    def loss(output, target):
        return ((output - target) ** 2).mean()

    weights = (1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0)  # nnU-Net's, four scales
    wrapped = DeepSupervisionWrapper(loss, weights)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 8)
    targets = [torch.rand(2, 3, 8 // 2**i, 8 // 2**i, 8 // 2**i) for i in range(4)]
    context = _context(supervised_loss=wrapped, deep_supervision_weights=weights)
    batch = StepBatch(torch.zeros(1), torch.zeros(1), targets, MODALITIES)
    got = _teacher().training_loss(TrainingStep(None, [logits], batch, context))["loss"]
    assert float(got) == pytest.approx(float(loss(logits, targets[0])), rel=1e-6)


def test_kd_distils_a_one_output_teacher_at_every_student_scale(tmp_path):
    """A foundation teacher has one output: its full-resolution logits, area-downsampled, are
    the targets of the student's lower scales (kd v3; before, only the full-resolution term
    counted, at its weight)."""
    torch.save(_reference().state_dict(), tmp_path / "w.pt")
    teacher = _build(checkpoint=str(tmp_path / "w.pt"), network_kwargs=json.dumps(TINY)).eval()
    torch.manual_seed(0)
    privileged = torch.randn(2, 4, 16, 16, 16)
    student = [torch.randn(2, 3, 16, 16, 16), torch.randn(2, 3, 8, 8, 8)]
    weights = (0.8, 0.2)
    context = _context(supervised_loss=lambda o, t: torch.tensor(0.0), teacher=teacher,
                       teacher_modalities=MODALITIES, deep_supervision_weights=weights)
    kd = KnowledgeDistillation(KnowledgeDistillation.resolve_hparams({}), None)
    terms = kd.training_loss(TrainingStep(None, student, StepBatch(
        privileged[:, 1:2], privileged, None, MODALITIES), context))
    with torch.no_grad():
        (reference,) = teacher(privileged)
    lower = torch.nn.functional.interpolate(reference, size=(8, 8, 8), mode="area")
    expected = (weights[0] * binary_kl(student[0], reference, 10.0)
                + weights[1] * binary_kl(student[1], lower, 10.0)) / sum(weights)
    assert float(terms["distillation"]) == pytest.approx(float(expected), rel=1e-6)


class Recording(FoundationTeacher):
    """Keeps the weights the model starts training from."""

    def build(self, context):
        model = super().build(context)
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model


def test_few_shot_fine_tuning_starts_from_the_checkpoint(prepared_phantom, tmp_path):
    from kdbench_plugins.nnunet_backbone import NnUNetBackbone, NnUNetOptions

    reference = _reference()
    torch.save(reference.state_dict(), tmp_path / "pretrained.pt")
    hparams = FoundationTeacher.resolve_hparams({
        "checkpoint": str(tmp_path / "pretrained.pt"), "network_kwargs": json.dumps(TINY),
        "few_shot_k": 2, "fine_tune_lr": 3e-3, **BUNDLE_ORDERS})
    strategy = Recording(hparams, FoundationTeacher.teacher_use(MODALITIES))
    ids = tuple(prepared_phantom.cases)
    train_cases = strategy.training_cases(ids[:6])
    assert train_cases == ids[:2]
    options = NnUNetOptions(patch_size=(16, 16, 16), batch_size=2, mirroring=False)
    backbone = NnUNetBackbone()
    reports = []
    result = backbone.train(TrainRequest(
        strategy=strategy, dataset=prepared_phantom, train_cases=train_cases,
        val_cases=ids[6:8], budget=strategy.training_budget(Budget(1, 2, 1)), options=options,
        output_dir=tmp_path / "job", seed=0, callbacks=[reports.append]))
    for key, value in reference.state_dict().items():  # started from the pretrained weights
        assert torch.equal(strategy.initial[f"network.{key}"], value), key
    final = torch.load(result.checkpoint, map_location="cpu", weights_only=False)
    weights = final["network_weights"]
    assert not all(torch.equal(weights[k], v) for k, v in strategy.initial.items())
    assert result.history["lrs"][0] == pytest.approx(3e-3)  # the poly schedule's first epoch
    assert reports[0].learning_rate == pytest.approx(3e-3)
    assert np.isfinite(reports[0].train_terms["loss"])

    # scored like any teacher: rebuilt from its own checkpoint (the pretrained file unread)
    (tmp_path / "pretrained.pt").rename(tmp_path / "elsewhere.pt")
    trained = TrainedModel(strategy, result.checkpoint)
    model = backbone.load_model(ModelRequest(trained=trained, dataset=prepared_phantom,
                                              options=options))
    assert all(torch.equal(model.state_dict()[k], v.to(model.state_dict()[k].device))
               for k, v in weights.items())
    written = backbone.predict(PredictRequest(
        trained=trained, dataset=prepared_phantom, options=options, case_ids=tuple(ids[8:9]),
        available=tuple(MODALITIES), out_dir=tmp_path / "pred"))
    import nibabel as nib

    labels = np.asanyarray(nib.load(written[ids[8]]).dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}


# -- the plan -----------------------------------------------------------------------------------


def test_kd_with_a_foundation_teacher_plans_one_teacher_job_per_cell(
        registry, demo_data, write_protocol):
    teacher_hparams = {"checkpoint": "weights/segresnet_brats.safetensors",
                       "architecture": "segresnet", "network_kwargs": json.dumps(TINY),
                       **BUNDLE_ORDERS}
    demo_data["strategies"] = [{"name": "mono"},
                               {"name": "kd", "teacher": "foundation",
                                "teacher_hparams": teacher_hparams}]
    plan = build_plan(load_protocol(write_protocol(demo_data), registry), registry)
    teachers = [j for j in plan.jobs if j.component == "foundation"]
    cells = {(j.n, j.seed) for j in plan.jobs}
    assert len(teachers) == len(cells) == 4
    for job in plan.jobs:
        if job.component == "kd":
            (teacher,) = [t for t in teachers if (t.n, t.seed) == (job.n, job.seed)]
            assert job.depends_on == {"teacher": teacher.id}
    for teacher in teachers:
        assert teacher.modalities.training == MODALITIES
        assert teacher.modalities.evaluate == (MODALITIES,)  # scored on the test set
        assert teacher.hparams["checkpoint"] == teacher_hparams["checkpoint"]
        assert teacher.kind == "teacher"
    assert not [j for j in plan.jobs if j.component == "multi"]


# -- declared training cases (no leakage into the test set: tests/engine/test_pretraining_leak.py)


def test_declared_training_cases_from_side_files_and_bundle_metadata(tmp_path, monkeypatch):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    side = tmp_path / "w.pt.training_cases.txt"
    side.write_text("# trained on BraTS 2018\nBrats18_CBICA_AAB_1\n\nBrats18_2013_2_1  # HGG\n"
                    "Brats18_CBICA_AAB_1\n")
    assert _teacher(checkpoint=str(weights)).pretraining_cases() == (
        "Brats18_CBICA_AAB_1", "Brats18_2013_2_1")
    side.write_text("# trained on no BraTS case\n")  # an empty list is a declaration
    assert _teacher(checkpoint=str(weights)).pretraining_cases() == ()
    # a named CSV replaces the side file (relative to the working directory)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cases.csv").write_text("site,Case_ID\nupenn,BraTS2021_00000\nx,\n")
    assert _teacher(checkpoint=str(weights), training_cases_file="cases.csv"
                    ).pretraining_cases() == ("BraTS2021_00000",)
    # a bundle: configs/metadata.json "training_cases", joined with the side file
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text(json.dumps(
        {"version": "0.5.0", "training_cases": ["Brats18_CBICA_ABC_1"]}))
    (tmp_path / "bundle.training_cases.txt").write_text("Brats18_CBICA_XYZ_1\n")
    assert _teacher(checkpoint=str(bundle), architecture="bundle").pretraining_cases() == (
        "Brats18_CBICA_XYZ_1", "Brats18_CBICA_ABC_1")


def test_undeclared_or_unreadable_training_cases_are_refused(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    with pytest.raises(KdbenchError) as error:
        _teacher(checkpoint=str(weights)).pretraining_cases()
    message = str(error.value)
    assert f"checkpoint {weights} declares no training cases" in message
    assert f"{weights}.training_cases.txt" in message and "training_cases_file" in message
    assert "allow_undeclared_training_data: true" in message
    assert _teacher(checkpoint=str(weights), allow_undeclared_training_data=True
                    ).pretraining_cases() is None
    with pytest.raises(KdbenchError, match="training_cases_file 'none.txt' not found"):
        _teacher(checkpoint=str(weights), training_cases_file="none.txt").pretraining_cases()
    (tmp_path / "ids.csv").write_text("id\nBraTS2021_00000\n")
    with pytest.raises(KdbenchError, match=r"ids\.csv has no case_id column \(columns: id\)"):
        _teacher(checkpoint=str(weights), training_cases_file=str(tmp_path / "ids.csv")
                 ).pretraining_cases()
    (tmp_path / "latin1.txt").write_bytes("BraTS_caf\xe9".encode("latin-1"))
    with pytest.raises(KdbenchError, match="cannot read the training cases .* UTF-8"):
        _teacher(checkpoint=str(weights), training_cases_file=str(tmp_path / "latin1.txt")
                 ).pretraining_cases()
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    metadata = bundle / "configs" / "metadata.json"
    metadata.write_text(json.dumps({"version": "0.5.0"}))  # no key: not a declaration
    with pytest.raises(KdbenchError, match=r'add "training_cases": \[\.\.\.\] to .*metadata'):
        _teacher(checkpoint=str(bundle), architecture="bundle").pretraining_cases()
    metadata.write_text(json.dumps({"training_cases": "Brats18_CBICA_AAB_1"}))
    with pytest.raises(KdbenchError, match='"training_cases" must be a list of case id'):
        _teacher(checkpoint=str(bundle), architecture="bundle").pretraining_cases()
    metadata.write_text("{not json")
    with pytest.raises(KdbenchError, match="metadata.json is not readable JSON"):
        _teacher(checkpoint=str(bundle), architecture="bundle").pretraining_cases()
    with pytest.raises(KdbenchError, match="not found"):  # the checkpoint itself first
        _teacher(checkpoint=str(tmp_path / "gone.pt")).pretraining_cases()
