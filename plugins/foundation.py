"""The ``foundation`` teacher: a pretrained network from a local file, fine-tuned few-shot.

A foundation-model teacher starts from weights trained elsewhere (a MONAI SegResNet or
SwinUNETR trained on BraTS, or any MONAI bundle), read from a LOCAL checkpoint file or bundle
directory — nothing is downloaded at run time — and is fine-tuned on the first ``few_shot_k``
cases of the Job's (N, seed) training subset with nnU-Net's recipe (its loader, augmentation,
Dice + BCE loss on region sigmoids, SGD and poly schedule) at ``fine_tune_lr``. It is then scored
on the test set like any teacher Job, and students (``kd``) distil from it.

Weights are read with ``torch.load(..., weights_only=True)`` or ``safetensors``: never by
unpickling arbitrary objects. ``checkpoint_sha256`` pins the file. A bundle's config is
instantiated with MONAI's ``ConfigParser`` (a config can hold Python expressions: treat a
bundle like code you install). See docs/foundation_teacher.md.

torch, MONAI and safetensors are imported only inside functions: loading this plugin costs
milliseconds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdbench import HParam, KdbenchError, Strategy, Teacher, hookimpl
from kdbench.components.strategy import BuildContext, StepBatch
from kdbench.modalities import MODALITIES, canonical

#: kdbench's output regions, in channel order (nnU-Net's region-based heads).
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
#: Keys under which a checkpoint may nest its state dict (Lightning/MONAI, MONAI's
#: CheckpointSaver with several objects, nnU-Net).
NESTED_KEYS: tuple[str, ...] = ("state_dict", "model", "network_weights")
#: Prefixes stripped from every key (DataParallel/DDP, torch.compile).
PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
BUNDLE_CONFIGS: tuple[str, ...] = ("inference.json", "inference.yaml", "inference.yml")
BUNDLE_WEIGHTS: tuple[str, ...] = ("model.safetensors", "model.pt")


class FoundationTeacher(Strategy, Teacher):
    """A pretrained network (local checkpoint or MONAI bundle), fine-tuned few-shot."""

    name = "foundation"
    version = "1"
    kind = "foundation-model"
    hparams = {
        "checkpoint": HParam(
            "",
            help="local path of the pretrained weights (.pt/.pth read with "
            "torch.load(weights_only=True), .safetensors), or of a MONAI bundle directory "
            "(architecture: bundle); relative paths resolve against the working directory",
            source="required: the protocol names the checkpoint (teacher_hparams)",
        ),
        "architecture": HParam(
            "segresnet",
            choices=("bundle", "segresnet", "swinunetr"),
            help="network the weights belong to: MONAI's SegResNet or SwinUNETR built from "
            "network_kwargs, or the network_def of a MONAI bundle's configs/inference.json",
            source="kdbench choice: SegResNet is the network of MONAI's brats_mri_segmentation "
            "bundle (Myronenko, BrainLes 2018)",
        ),
        "network_kwargs": HParam(
            "{}",
            help="JSON object of constructor arguments of the SegResNet/SwinUNETR (in_channels "
            "and out_channels default to the lengths of channel_order and output_order)",
            source="MONAI's constructor defaults (monai.networks.nets)",
        ),
        "checkpoint_sha256": HParam(
            "",
            help="expected sha256 of the weights file (a bundle's models/model.*); empty: not "
            "checked",
            source="kdbench choice: pin the exact weights a result comes from",
        ),
        "channel_order": HParam(
            "t1,t1ce,t2,flair",
            help="comma-separated modalities of the checkpoint's input channels, in its order "
            "(MONAI's brats_mri_segmentation bundle: t1ce,t1,t2,flair)",
            source="kdbench's canonical channel order (kdbench/modalities.py)",
        ),
        "output_order": HParam(
            "WT,TC,ET",
            help="comma-separated regions of the checkpoint's sigmoid output channels, in its "
            "order (MONAI's brats_mri_segmentation bundle: TC,WT,ET)",
            source="kdbench's region order (nnU-Net's BraTS regions)",
        ),
        "few_shot_k": HParam(
            5,
            help="fine-tune on the first k cases of the (N, seed) training subset; 0 or k >= N: "
            "all N",
            source="kdbench choice: a few-shot adaptation; set per protocol",
        ),
        "fine_tune_lr": HParam(
            1e-4,
            low=1e-6,
            high=1e-2,
            log=True,
            help="initial learning rate of nnU-Net's SGD and poly schedule during fine-tuning "
            "(nnU-Net trains from scratch at 1e-2)",
            source="kdbench choice: the learning rate MONAI's brats_mri_segmentation bundle was "
            "trained with (configs/train.json, Adam 1e-4), 1/100 of nnU-Net's from-scratch 1e-2",
        ),
        "fine_tune_epochs": HParam(
            0,
            help="epochs of fine-tuning; 0: the protocol's training.epochs",
            source="kdbench choice: the protocol's budget unless set",
        ),
    }

    # -- the few-shot protocol ------------------------------------------------------------------

    def training_cases(self, cases: tuple[str, ...]) -> tuple[str, ...]:
        """The first ``few_shot_k`` cases of the training subset (in its seeded order).

        ``few_shot_k = 0`` takes every case; so does a k at or above the number of training
        cases, without an error (a learning curve sweeps N from small to large: at small N the
        teacher fine-tunes on all of them, as the ``train_cases`` of its ``done.json`` show).
        """
        k = int(self.hparams["few_shot_k"])
        if k < 0:
            raise KdbenchError(f"foundation teacher: few_shot_k must be 0 (all cases) or "
                               f"positive, got {k}")
        return tuple(cases) if k == 0 else tuple(cases)[:k]

    def training_budget(self, budget: Any) -> Any:
        """The protocol's budget at ``fine_tune_lr``, for ``fine_tune_epochs`` (0: the
        protocol's epochs)."""
        epochs = int(self.hparams["fine_tune_epochs"])
        if epochs < 0:
            raise KdbenchError(f"foundation teacher: fine_tune_epochs must be 0 (the "
                               f"protocol's epochs) or positive, got {epochs}")
        return dataclasses.replace(budget, initial_lr=float(self.hparams["fine_tune_lr"]),
                                   epochs=epochs or budget.epochs)

    # -- the model ------------------------------------------------------------------------------

    def build(self, context: BuildContext) -> Any:
        """The pretrained network behind kdbench's channel and region orders.

        The network is built from ``architecture`` (and ``network_kwargs`` or the bundle's
        config). When ``context.for_training`` is true the pretrained weights are loaded
        (sha256 checked first, strict key matching); when false (a finished Job's model rebuilt
        to receive its own checkpoint) the pretrained file is not read.
        """
        inputs = self.input_modalities()
        channels = _channel_order(self.hparams["channel_order"], inputs)
        regions = _output_order(self.hparams["output_order"], context.num_outputs)
        architecture = self.hparams["architecture"]
        # a finished Job's model needs no pretrained file, only a bundle's config
        needs_file = context.for_training or architecture == "bundle"
        source = _checkpoint_path(self.hparams["checkpoint"], must_exist=needs_file)
        if architecture == "bundle":
            config, weights = _bundle_files(source, need_weights=context.for_training)
            network = _bundle_network(source, config)
        else:
            if source.is_dir():
                raise KdbenchError(
                    f"foundation teacher: checkpoint {source} is a directory; for a MONAI "
                    "bundle set `teacher_hparams: {architecture: bundle}`, else name the "
                    "weights file")
            weights = source
            network = _monai_network(architecture, self.hparams["network_kwargs"],
                                     len(channels), len(regions))
        if context.for_training:
            _check_sha256(weights, self.hparams["checkpoint_sha256"])
            load_pretrained(network, weights)
        wrapper = _classes()[1](network, [inputs.index(m) for m in channels],
                                [regions.index(r) for r in REGIONS])
        return wrapper.to(context.device)

    def training_loss(self, outputs: Any, batch: StepBatch, context: BuildContext
                      ) -> dict[str, Any]:
        """nnU-Net's Dice + BCE on the full-resolution output, unscaled.

        With deep supervision on, the model returns ``[logits]``: nnU-Net's
        ``DeepSupervisionWrapper`` zips outputs with its targets, so only the full-resolution
        pair is used, multiplied by its weight ``w_0`` (1/1.75 with four scales). Dividing by
        ``w_0`` makes the loss the plain full-resolution loss, so ``fine_tune_lr`` means what it
        says. (nnU-Net's logged validation loss keeps the ``w_0`` factor; the pseudo-Dice does
        not depend on it.)
        """
        supervised = context.supervised_loss(outputs, batch.target)
        weights = context.deep_supervision_weights
        if isinstance(outputs, list | tuple) and weights and weights[0] > 0:
            supervised = supervised / weights[0]
        return {"loss": supervised}


# -- hyper-parameters ---------------------------------------------------------------------------


def _channel_order(text: str, inputs: tuple[str, ...]) -> tuple[str, ...]:
    try:
        names = tuple(canonical(n) for n in str(text).split(",") if n.strip())
    except ValueError as exc:
        raise KdbenchError(f"foundation teacher: channel_order {text!r}: {exc}") from None
    if len(set(names)) != len(names) or not names:
        raise KdbenchError(f"foundation teacher: channel_order {text!r} must name each input "
                           f"channel of the checkpoint once (from {', '.join(MODALITIES)})")
    absent = [m for m in names if m not in inputs]
    if absent:
        raise KdbenchError(
            f"foundation teacher: the checkpoint reads {', '.join(absent)} (channel_order "
            f"{text!r}) but the Job trains on {', '.join(inputs)} only; give the scenario's "
            "training modalities or a checkpoint without them")
    return names


def _output_order(text: str, num_outputs: int) -> tuple[str, ...]:
    regions = tuple(r.strip().upper() for r in str(text).split(",") if r.strip())
    if sorted(regions) != sorted(REGIONS) or num_outputs != len(REGIONS):
        raise KdbenchError(
            f"foundation teacher: output_order {text!r} must order the regions "
            f"{', '.join(REGIONS)} once each (the checkpoint's {num_outputs}-channel sigmoid "
            "outputs); MONAI's brats_mri_segmentation bundle is TC,WT,ET")
    return regions


def _checkpoint_path(text: str, must_exist: bool = True) -> Path:
    if not str(text).strip():
        raise KdbenchError(
            "foundation teacher: no checkpoint given; set `teacher_hparams: {checkpoint: "
            "PATH}` in the protocol (a local .pt/.pth/.safetensors file, or a MONAI bundle "
            "directory with `architecture: bundle`)")
    path = Path(os.path.expanduser(str(text)))
    resolved = path if path.is_absolute() else Path.cwd() / path
    if must_exist and not resolved.exists():
        relative = "" if path.is_absolute() else \
            f" (relative paths resolve against the working directory {Path.cwd()})"
        raise KdbenchError(f"foundation teacher: checkpoint {text!r} not found at "
                           f"{resolved}{relative}")
    return resolved


def _check_sha256(path: Path, expected: str) -> None:
    expected = str(expected).strip().lower()
    if not expected:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise KdbenchError(
            f"foundation teacher: {path} has sha256 {digest.hexdigest()}, not the "
            f"checkpoint_sha256 {expected} the protocol names; the file is not the checkpoint "
            "the protocol was written for (replace it, or update checkpoint_sha256)")


# -- networks -----------------------------------------------------------------------------------


def _monai_network(architecture: str, kwargs_json: str, in_channels: int, out_channels: int
                   ) -> Any:
    try:
        given = json.loads(kwargs_json or "{}")
    except json.JSONDecodeError as exc:
        raise KdbenchError(f"foundation teacher: network_kwargs is not JSON ({exc}): "
                           f"{kwargs_json!r}") from None
    if not isinstance(given, dict):
        raise KdbenchError(f"foundation teacher: network_kwargs must be a JSON object, got "
                           f"{kwargs_json!r}")
    kwargs = {"in_channels": in_channels, "out_channels": out_channels, **given}
    for key, wanted, hparam in (("in_channels", in_channels, "channel_order"),
                                ("out_channels", out_channels, "output_order")):
        if kwargs[key] != wanted:
            raise KdbenchError(f"foundation teacher: network_kwargs {key}={kwargs[key]} but "
                               f"{hparam} names {wanted} channels")
    from monai.networks.nets import SegResNet, SwinUNETR

    cls = {"segresnet": SegResNet, "swinunetr": SwinUNETR}[architecture]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise KdbenchError(f"foundation teacher: network_kwargs {given} do not fit "
                           f"{cls.__name__}: {exc}") from None


def _bundle_files(bundle: Path, need_weights: bool = True) -> tuple[Path, Path]:
    if not bundle.is_dir():
        raise KdbenchError(f"foundation teacher: architecture 'bundle' needs a MONAI bundle "
                           f"directory, but {bundle} is a file; set architecture to segresnet "
                           "or swinunetr for a weights file")
    configs = [bundle / "configs" / n for n in BUNDLE_CONFIGS if (bundle / "configs" / n).is_file()]
    weights = [bundle / "models" / n for n in BUNDLE_WEIGHTS if (bundle / "models" / n).is_file()]
    if not configs:
        raise KdbenchError(f"foundation teacher: bundle {bundle} has no configs/inference.json "
                           "(or .yaml) with a network_def")
    if not weights and need_weights:
        raise KdbenchError(f"foundation teacher: bundle {bundle} has no models/model.pt or "
                           "models/model.safetensors (a TorchScript model.ts is not read)")
    return configs[0], (weights or [bundle / "models" / BUNDLE_WEIGHTS[-1]])[0]


def _bundle_network(bundle: Path, config: Path) -> Any:
    from monai.bundle import ConfigParser
    from torch import nn

    parser = ConfigParser()
    parser.read_config(str(config))
    if "network_def" not in parser.config:
        raise KdbenchError(f"foundation teacher: {config} has no `network_def`")
    parser["bundle_root"] = str(bundle)
    try:
        network = parser.get_parsed_content("network_def")
    except Exception as exc:  # MONAI raises many kinds; name the file
        raise KdbenchError(f"foundation teacher: could not instantiate network_def of "
                           f"{config}: {exc}") from exc
    if not isinstance(network, nn.Module):
        raise KdbenchError(f"foundation teacher: network_def of {config} is a "
                           f"{type(network).__name__}, not a torch module")
    return network


# -- weights ------------------------------------------------------------------------------------


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of a checkpoint file, without unpickling arbitrary objects.

    ``.safetensors`` files are read with ``safetensors.torch.load_file``; anything else with
    ``torch.load(weights_only=True)``, which refuses every object that is not a tensor, a
    container or a primitive. A state dict nested under ``state_dict``, ``model`` or
    ``network_weights`` is taken out; ``module.`` and ``_orig_mod.`` prefixes are stripped.

    Raises:
        KdbenchError: the file holds other objects, cannot be read, or holds no state dict.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            found: Any = load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError and OS errors
            raise KdbenchError(f"foundation teacher: {path} is not a readable safetensors "
                               f"file: {exc}") from exc
    else:
        import pickle

        import torch

        try:
            found = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            detail = _unpickler_detail(str(exc))
            if "global" not in detail.lower():  # not a pickle at all, or a corrupt one
                raise KdbenchError(f"foundation teacher: {path} is not a readable PyTorch "
                                   f"checkpoint (torch: {detail})") from None
            raise KdbenchError(
                f"foundation teacher: refused to load {path}: it holds Python objects other "
                "than tensors, and kdbench reads checkpoints with torch.load(weights_only=True), "
                "never unpickling arbitrary objects. Save only the weights "
                "(torch.save(model.state_dict(), path)) or convert them to .safetensors. "
                f"(torch: {detail})") from None
        except Exception as exc:  # a corrupt or foreign file
            raise KdbenchError(f"foundation teacher: {path} is not a readable PyTorch "
                               f"checkpoint: {exc}") from exc
    return _state_dict(found, path)


def _unpickler_detail(message: str) -> str:
    """The reason in torch's weights-only refusal, e.g. ``Unsupported global: GLOBAL
    __main__.Payload was not an allowed global by default``."""
    import re

    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", message, flags=re.S)
    text = " ".join((found.group(1) if found else message.strip().split("\n")[0]).split())
    return text.split(". Please use")[0]


def _state_dict(found: Any, path: Path) -> dict[str, Any]:
    import torch

    for _ in range(len(NESTED_KEYS) + 1):
        if isinstance(found, Mapping) and found and all(
                isinstance(v, torch.Tensor) for v in found.values()):
            break
        nested = next((found[k] for k in NESTED_KEYS if isinstance(found, Mapping)
                       and isinstance(found.get(k), Mapping)), None)
        if nested is None:
            keys = list(found)[:8] if isinstance(found, Mapping) else type(found).__name__
            raise KdbenchError(
                f"foundation teacher: {path} is not a state dict of tensors (top level: "
                f"{keys}); expected one, possibly under {', '.join(NESTED_KEYS)}")
        found = nested
    out = {}
    for key, value in found.items():
        name = str(key)
        while name.startswith(PREFIXES):
            name = name.split(".", 1)[1]
        out[name] = value
    return out


def load_pretrained(network: Any, path: Path) -> None:
    """Load a checkpoint file into ``network`` strictly.

    Raises:
        KdbenchError: naming the file and the first missing, unexpected and mis-shaped keys.
    """
    weights = read_weights(path)
    own = network.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:5])}"
                 + (", ..." if len(keys) > 5 else "")
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches (file vs network)", shapes)) if keys]
        raise KdbenchError(
            f"foundation teacher: the weights in {path} do not fit the network "
            f"({type(network).__name__}): {'; '.join(parts)}. Check `architecture` and "
            "`network_kwargs` (or the bundle's network_def)")
    network.load_state_dict(weights, strict=True)


# -- the module kdbench trains ------------------------------------------------------------------


@functools.cache
def _classes() -> tuple[type, type]:
    """The torch modules, defined on first use (torch is not imported with the plugin)."""
    from torch import nn

    class DeepSupervisionSwitch(nn.Module):
        """The flag nnU-Net's trainer toggles (``module.decoder.deep_supervision``)."""

        def __init__(self) -> None:
            super().__init__()
            self.deep_supervision = True

    class FoundationNetwork(nn.Module):
        """A pretrained network behind kdbench's channel order and region order.

        ``forward(x)``: ``x`` holds the Job's channels in kdbench's order; they are permuted
        to the checkpoint's ``channel_order``, its outputs to WT, TC, ET. With deep supervision
        on (nnU-Net's training) the logits come as a one-element list (nnU-Net's loss then uses
        the full resolution only); with it off (inference), as a tensor.
        """

        def __init__(self, network: nn.Module, input_index: list[int],
                     output_index: list[int]) -> None:
            super().__init__()
            self.network = network
            self.decoder = DeepSupervisionSwitch()
            self.input_index = list(input_index)
            self.output_index = list(output_index)

        def forward(self, x: Any) -> Any:
            if self.input_index != list(range(x.shape[1])):
                x = x[:, self.input_index]
            out = self.network(x)
            if isinstance(out, list | tuple):  # a network with its own deep supervision
                out = out[0]
            if out.shape[1] != len(self.output_index):
                raise KdbenchError(
                    f"foundation teacher: the network returns {out.shape[1]} channels, "
                    f"output_order names {len(self.output_index)}")
            if self.output_index != list(range(len(self.output_index))):
                out = out[:, self.output_index]
            return [out] if self.decoder.deep_supervision else out

    return DeepSupervisionSwitch, FoundationNetwork


@hookimpl
def kdbench_register_teachers(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``foundation`` as a teacher."""
    registry.add(FoundationTeacher)
