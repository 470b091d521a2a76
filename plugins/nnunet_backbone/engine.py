"""Training, model loading and prediction of Jobs with nnU-Net (``KdbenchTrainer``).

Everything nnU-Net runs here runs inside :func:`nnunet_environment`, pointed at the prepared
dataset's folders and the Job's own results folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdbench import TrainedModel, TrainRequest, TrainResult
from kdbench.errors import KdbenchError
from kdbench.modalities import channel_indices
from kdbench_plugins.nnunet_backbone.checkpoint import load_checkpoint_file, save_checkpoint_file
from kdbench_plugins.nnunet_backbone.environment import NnUNetFolders, nnunet_environment
from kdbench_plugins.nnunet_backbone.networks import network_builder
from kdbench_plugins.nnunet_backbone.trainer import (
    CHECKPOINT_FINAL,
    CHECKPOINT_LATEST,
    KdbenchTrainer,
    TrainerSettings,
)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU runs are then deterministic)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepared_folders(dataset: Any) -> tuple[NnUNetFolders, Mapping[str, Any]]:
    summary = dataset.marker["backbone"]["summary"]
    folders = NnUNetFolders(Path(dataset.path) / "nnunet", summary["dataset_name"])
    return folders, summary


def load_plans(dataset: Any, options: Any) -> tuple[dict, dict, str]:
    """The plans (with the protocol's patch, batch and feature overrides), dataset.json and
    configuration."""
    folders, summary = prepared_folders(dataset)
    plans = json.loads((folders.root / summary["plans_file"]).read_text())
    dataset_json = json.loads((folders.preprocessed_dataset / "dataset.json").read_text())
    configuration = summary["configuration"]
    config = plans["configurations"][configuration]
    if options.patch_size is not None:
        strides = np.prod(np.array(config["architecture"]["arch_kwargs"]["strides"]), axis=0)
        bad = [p for p, s in zip(options.patch_size, strides, strict=True) if p % s]
        if bad:
            raise KdbenchError(
                f"backbone.options.patch_size {list(options.patch_size)} must be divisible by the "
                f"network's total stride {strides.tolist()} per axis; choose multiples of it"
            )
        config["patch_size"] = list(options.patch_size)
    if options.batch_size is not None:
        config["batch_size"] = options.batch_size
    if options.features_per_stage is not None:
        arch = config["architecture"]["arch_kwargs"]
        if len(options.features_per_stage) != arch["n_stages"]:
            raise KdbenchError(
                f"backbone.options.features_per_stage {list(options.features_per_stage)} has "
                f"{len(options.features_per_stage)} values but the planned network has "
                f"{arch['n_stages']} stages; give one value per stage"
            )
        arch["features_per_stage"] = list(options.features_per_stage)
    return plans, dataset_json, configuration


def _trainer(dataset: Any, options: Any, device: str, continue_training: bool
             ) -> KdbenchTrainer:
    plans, dataset_json, configuration = load_plans(dataset, options)
    plans["continue_training"] = continue_training  # nnunetv2 2.8 pops this key
    return KdbenchTrainer(plans, configuration, 0, dataset_json, torch.device(device))


def train(request: TrainRequest) -> TrainResult:
    """Train (or resume, or find finished) the request's strategy with nnU-Net's recipe.

    nnU-Net prints its log to the console as well as to its log file; here that console output
    goes to ``nnunet_console.log`` in the Job's folder, so progress displays stay readable.
    """
    folders, _ = prepared_folders(request.dataset)
    output_dir = Path(request.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with nnunet_environment(folders, results=output_dir / "nnunet",
                            nnUNet_n_proc_DA=str(request.data_workers)), \
            open(output_dir / "nnunet_console.log", "a") as console, \
            contextlib.redirect_stdout(console):
        needed = {role: trained for role, trained in
                  (("teacher", request.teacher), ("generator", request.generator)) if trained}
        loaded = {role: load_model(trained, request.dataset, request.options, request.device)
                  for role, trained in needed.items()}
        seed_everything(request.seed)
        if request.device.startswith("cuda"):
            # as nnUNetv2_train does: cuDNN autotuning (CPU runs stay deterministic)
            torch.backends.cudnn.deterministic = False
            torch.backends.cudnn.benchmark = True
        trainer = _trainer(request.dataset, request.options, request.device,
                           continue_training=True)
        output = Path(trainer.output_folder)
        final, latest = output / CHECKPOINT_FINAL, output / CHECKPOINT_LATEST
        if final.exists():
            epochs = load_checkpoint_file(final)["current_epoch"]
            return TrainResult(final, epochs, None, {})
        trainer.configure(TrainerSettings(
            strategy=request.strategy,
            train_cases=request.train_cases,
            val_cases=request.val_cases,
            epochs=request.budget.epochs,
            iterations_per_epoch=request.budget.iterations_per_epoch,
            val_iterations=request.budget.val_iterations,
            validate_every=request.budget.validate_every,
            checkpoint_every=request.budget.checkpoint_every,
            compile=request.compile,
            teacher=_teacher_module(request.teacher, loaded.get("teacher")),
            teacher_modalities=_teacher_reads(request.teacher),
            generator=loaded.get("generator"),
            dependencies={role: trained.strategy for role, trained in needed.items()},
            unlabelled_cases=tuple(request.unlabelled_cases),
            initial_lr=request.budget.initial_lr,
            training_modalities=request.strategy.modalities.training,
            callbacks=list(request.callbacks),
            augmentation=getattr(request.options, "augmentation", "nnunet"),
        ))
        if request.budget.epochs == 0:  # a model assembled from trained parts
            _write_checkpoint(request.strategy.build(trainer.context), final)
            return TrainResult(final, 0, None, {})
        resumed_from = None
        if latest.exists():
            trainer.load_checkpoint(str(latest))
            resumed_from = trainer.current_epoch
        trainer.run_training()
        history = {k: list(v) for k, v in trainer.logger.get_checkpoint().items()}
    return TrainResult(final, trainer.num_epochs, resumed_from, history)


def _teacher_reads(teacher: TrainedModel | None) -> tuple[str, ...]:
    """The channels a teacher Job's model reads for its students (``Teacher.teacher_reads``;
    a teacher dependency is always a registered :class:`kdbench.Teacher`)."""
    return () if teacher is None else tuple(teacher.strategy.teacher_reads())


def _teacher_module(teacher: TrainedModel | None, model: Any) -> Any:
    """The module students call: the teacher's model, or its view (``Teacher.teacher_module``)."""
    return model if teacher is None or model is None else teacher.strategy.teacher_module(model)


def _write_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """A checkpoint of an untrained (assembled) model in nnU-Net's layout, written atomically
    (fsynced, renamed; a full disk names the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint_file({"network_weights": model.state_dict(), "current_epoch": 0}, path)


def load_model(trained: TrainedModel, dataset: Any, options: Any, device: str,
               plans: tuple[dict, dict, str] | None = None) -> torch.nn.Module:
    """A finished Job's trainable model, weights loaded, in eval mode, frozen (``plans``:
    what :func:`load_plans` returned, when the caller has it already).

    The models it depends on are loaded first and given to ``Strategy.build`` (a model built
    from a teacher or generator is rebuilt the same way, then its own weights are loaded).
    """
    if not Path(trained.checkpoint).exists():
        raise KdbenchError(f"checkpoint {trained.checkpoint} not found; run its Job first")
    plans = plans or load_plans(dataset, options)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kdbench import BuildContext

    dependencies = {role: load_model(dep, dataset, options, device, plans)
                    for role, dep in trained.dependencies.items()}
    manager = PlansManager(plans[0])
    config = manager.get_configuration(plans[2])
    labels = manager.get_label_manager(plans[1])
    teacher = trained.dependencies.get("teacher")
    context = BuildContext(
        network=network_builder(manager, config, labels.num_segmentation_heads, device),
        supervised_loss=lambda o, t: None,
        num_outputs=labels.num_segmentation_heads,
        device=torch.device(device),
        teacher=_teacher_module(teacher, dependencies.get("teacher")),
        teacher_modalities=_teacher_reads(teacher),
        generator=dependencies.get("generator"),
        dependencies={role: dep.strategy for role, dep in trained.dependencies.items()},
        patch_size=tuple(config.patch_size),
        for_training=False,
    )
    model = trained.strategy.build(context)
    model.load_state_dict(model_weights(Path(trained.checkpoint), device))
    model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def model_weights(path: Path, device: str) -> dict[str, torch.Tensor]:
    """A model's weights: a Job's checkpoint (nnU-Net's ``network_weights``) or an exported
    ``.safetensors`` file (tensors only, nothing unpickled)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device=device)
    return load_checkpoint_file(path, map_location=device)["network_weights"]


def full_resolution_only(model: torch.nn.Module) -> None:
    """Switch deep supervision off in every nnU-Net decoder of ``model`` (inference)."""
    for module in model.modules():
        decoder = getattr(module, "decoder", None)
        if decoder is not None and hasattr(decoder, "deep_supervision"):
            decoder.deep_supervision = False


def synthesise(trained: TrainedModel, dataset: Any, options: Any, case_ids: Sequence[str],
               device: str = "cpu") -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """A generator's point estimate of its missing channels for each case, in nnU-Net's
    preprocessed space: ``(case, synthesised, real, brain mask)``.

    Sliding-window inference over the whole preprocessed (brain-cropped) volume with the
    training patch size, half-patch overlap and Gaussian blending (MONAI's
    ``sliding_window_inference``, as nnU-Net blends its tiles). The brain mask is nnU-Net's
    non-zero mask (the segmentation is -1 outside it).
    """
    from monai.inferers import sliding_window_inference
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    generator = trained.strategy
    plans = load_plans(dataset, options)
    patch = plans[0]["configurations"][plans[2]]["patch_size"]
    model = load_model(trained, dataset, options, device, plans)
    full_resolution_only(model)
    folders, summary = prepared_folders(dataset)
    data_folder = str(folders.root / summary["data_folder"])
    cases = infer_dataset_class(data_folder)(data_folder, list(case_ids))
    given = list(channel_indices(generator.available))
    missing = list(channel_indices(generator.missing))
    for case_id in case_ids:
        data, seg, _, _ = cases.load_case(case_id)
        data = np.asarray(data)
        image = torch.from_numpy(data[given]).float()[None].to(device)
        with torch.inference_mode():
            synthesised = sliding_window_inference(
                image, roi_size=patch, sw_batch_size=2, overlap=0.5, mode="gaussian",
                predictor=lambda x: generator.synthesise(model, x))
        yield (case_id, synthesised[0].float().cpu().numpy(), data[missing],
               np.asarray(seg[0]) >= 0)


def predict(
    trained: TrainedModel,
    dataset: Any,
    options: Any,
    case_ids: Sequence[str],
    available: Sequence[str],
    out_dir: Path,
    device: str = "cpu",
) -> dict[str, Path]:
    """nnU-Net's sliding-window prediction of preprocessed cases, exported as NIfTI.

    The model reads the channels of ``available``; each prediction is resampled back to the
    source geometry by nnU-Net's exporter (same affine and shape as the source images) and
    written with the label values of the source release.
    """
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folders, summary = prepared_folders(dataset)
    plans = load_plans(dataset, options)
    predictor = sliding_window_predictor(trained, plans, available, options.mirroring, device)
    to_source = source_labels(dataset.marker["label_convention"])
    data_folder = str(folders.root / summary["data_folder"])
    cases = infer_dataset_class(data_folder)(data_folder, list(case_ids))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    channels = list(channel_indices(available))
    with nnunet_environment(folders):
        for case_id in case_ids:
            data, _, _, properties = cases.load_case(case_id)
            image = torch.from_numpy(np.stack([np.asarray(data[c]) for c in channels]))
            written[case_id] = write_prediction(predictor, image, properties, out_dir / case_id,
                                                to_source)
    return written


def sliding_window_predictor(trained: TrainedModel, plans: tuple[dict, dict, str],
                             available: Sequence[str], mirroring: bool, device: str) -> Any:
    """nnU-Net's predictor (Gaussian-weighted tiles, step 0.5) around the network the
    strategy infers with on ``available``, full-resolution output only."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans[0])
    config = manager.get_configuration(plans[2])
    model = load_model(trained, None, None, device, plans=plans)
    full_resolution_only(model)  # inference uses the full-resolution output only
    network = trained.strategy.inference_model(model, tuple(available))
    full_resolution_only(network)  # also in parts an inference model adds (a segmenter)
    if device == "cpu":
        network = PairedBatchOnCpu(network)
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's notices about the device
        predictor = nnUNetPredictor(
            tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
            perform_everything_on_device=device != "cpu", device=torch.device(device),
            verbose=False, verbose_preprocessing=False, allow_tqdm=False,
        )
        predictor.manual_initialization(network, manager, config, None, plans[1],
                                        KdbenchTrainer.__name__, _mirror_axes(config))
    return predictor


def source_labels(convention: str) -> np.ndarray:
    """A lookup table from nnU-Net's canonical labels to those of ``convention``."""
    from kdbench.cases import LABEL_MAPS

    source_map = LABEL_MAPS[convention]
    to_source = np.zeros(max(source_map.values()) + 1, dtype=np.uint8)
    for source_value, canonical in source_map.items():
        to_source[canonical] = source_value
    return to_source


def write_prediction(predictor: Any, image: torch.Tensor, properties: dict, stem: Path,
                     to_source: np.ndarray) -> Path:
    """Sliding-window logits of one preprocessed ``image``, exported by nnU-Net to the
    geometry in ``properties`` (``<stem>.nii.gz``), then rewritten in ``to_source``'s labels."""
    import nibabel as nib
    from nnunetv2.inference.export_prediction import export_prediction_from_logits

    with torch.inference_mode():
        logits = predictor.predict_sliding_window_return_logits(image.float())
    dataset_json = predictor.dataset_json
    export_prediction_from_logits(logits.cpu(), properties, predictor.configuration_manager,
                                  predictor.plans_manager, dataset_json, str(stem),
                                  num_threads_torch=1)
    path = stem.with_name(stem.name + dataset_json["file_ending"])
    exported = nib.load(path)
    labels = to_source[np.asanyarray(exported.dataobj).astype(np.int64)]
    out = nib.Nifti1Image(labels, exported.affine, header=exported.header)
    out.set_data_dtype(np.uint8)
    nib.save(out, path)
    return path


class PairedBatchOnCpu(torch.nn.Module):
    """Runs a batch of one tile as a batch of two (the tile twice) and keeps the first output.

    nnU-Net predicts one tile at a time. On CPU, PyTorch's convolution heuristics send a batch
    of one with few channels and small planes to its native kernel instead of oneDNN (the
    ``input.size(0) > 1`` test of ``ConvParams::use_mkldnn``): for 3D patches of CPU demo size
    that is 3-4x slower per tile than the same tile twice through oneDNN. Every sample is
    computed independently (instance normalisation), so the kept output is the tile's own.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> Any:
        if x.shape[0] != 1:
            return self.network(x)
        out = self.network(torch.cat([x, x]))
        if isinstance(out, list | tuple):
            return type(out)(o[:1] for o in out)
        return out[:1]


def _mirror_axes(config: Any) -> tuple[int, ...]:
    # nnU-Net mirrors along every spatial axis of a 3D patch (as in its trainer's default)
    return tuple(range(len(config.patch_size)))

