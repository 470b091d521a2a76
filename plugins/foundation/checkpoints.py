"""Reading a foundation model from local files: the checkpoint's path and sha256, the network
(MONAI SegResNet / SwinUNETR, or a MONAI bundle's ``network_def``) and its weights, without
unpickling arbitrary objects (``torch.load(weights_only=True)`` or safetensors), and the case
ids it declares it was trained on (a side file, or a bundle's ``configs/metadata.json``).

torch, MONAI and safetensors are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdbench import KdbenchError

#: Keys under which a checkpoint may nest its state dict (Lightning/MONAI, MONAI's
#: CheckpointSaver with several objects, nnU-Net).
NESTED_KEYS: tuple[str, ...] = ("state_dict", "model", "network_weights")
#: Prefixes stripped from every key (DataParallel/DDP, torch.compile).
PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
BUNDLE_CONFIGS: tuple[str, ...] = ("inference.json", "inference.yaml", "inference.yml")
BUNDLE_WEIGHTS: tuple[str, ...] = ("model.safetensors", "model.pt")
#: The side file beside a checkpoint (``<checkpoint>.training_cases.txt``) listing its
#: training cases, read when ``training_cases_file`` is empty.
TRAINING_CASES_SUFFIX = ".training_cases.txt"
#: The key of a bundle's ``configs/metadata.json`` listing its training cases.
METADATA_KEY = "training_cases"
#: The column of a CSV ``training_cases_file`` holding the case ids.
CSV_COLUMN = "case_id"


def checkpoint_path(text: str, must_exist: bool = True) -> Path:
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


def check_sha256(path: Path, expected: str) -> None:
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


def monai_network(architecture: str, kwargs_json: str, in_channels: int, out_channels: int
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


def bundle_files(bundle: Path, need_weights: bool = True) -> tuple[Path, Path]:
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


def bundle_network(bundle: Path, config: Path) -> Any:
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


# -- declared training cases --------------------------------------------------------------------


def side_file(checkpoint: Path) -> Path:
    """``<checkpoint>.training_cases.txt``, beside the weights file or bundle directory."""
    return checkpoint.with_name(checkpoint.name + TRAINING_CASES_SUFFIX)


def declared_training_cases(checkpoint: Path, architecture: str, listed: str
                            ) -> tuple[tuple[str, ...], list[Path]] | None:
    """The case ids a checkpoint declares it was trained on, and the files declaring them.

    Read, and joined: ``listed`` (the ``training_cases_file`` hyper-parameter) or, when it is
    empty, the side file ``<checkpoint>.training_cases.txt``; and, for a bundle, the
    ``training_cases`` list of its ``configs/metadata.json``. An empty list is a declaration:
    the checkpoint saw no case of any BraTS release.

    Returns:
        ``(ids in first-seen order, files)``, or ``None`` when nothing declares them.

    Raises:
        KdbenchError: ``listed`` does not exist, or a declaration cannot be read (naming the
            file and what it must hold).
    """
    files: list[Path] = []
    if str(listed).strip():
        path = Path(os.path.expanduser(str(listed)))
        path = path if path.is_absolute() else Path.cwd() / path
        if not path.is_file():
            raise KdbenchError(
                f"foundation teacher: training_cases_file {listed!r} not found at {path} "
                f"(relative paths resolve against the working directory {Path.cwd()})")
        files.append(path)
    elif side_file(checkpoint).is_file():
        files.append(side_file(checkpoint))
    ids: list[str] = [i for f in files for i in _read_case_list(f)]
    metadata = checkpoint / "configs" / "metadata.json"
    if architecture == "bundle" and metadata.is_file():
        listed_ids = _bundle_cases(metadata)
        if listed_ids is not None:
            files.append(metadata)
            ids.extend(listed_ids)
    if not files:
        return None
    return tuple(dict.fromkeys(ids)), files


def undeclared_message(checkpoint: Path, architecture: str) -> str:
    """What to do when a checkpoint declares no training cases."""
    bundle = (f", add \"{METADATA_KEY}\": [...] to {checkpoint / 'configs' / 'metadata.json'}"
              if architecture == "bundle" else "")
    return (
        f"foundation teacher: checkpoint {checkpoint} declares no training cases, so kdbench "
        "cannot check that none of them is in the test set (a BraTS 2018 case is in BraTS "
        "2021/2023 under a new id). List the case ids it was trained on, one per line ('#' "
        f"comments), in {side_file(checkpoint)}{bundle}, or name such a file (or a CSV with a "
        f"{CSV_COLUMN} column) with `teacher_hparams: {{training_cases_file: PATH}}`; an empty "
        "list declares that it saw no BraTS case. Or set `teacher_hparams: "
        "{allow_undeclared_training_data: true}`: the report then flags the strategies that "
        "use it (docs/foundation_teacher.md)")


def _read_case_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise KdbenchError(f"foundation teacher: cannot read the training cases in {path} "
                           f"({exc}); it must be UTF-8 text") from None
    if path.suffix.lower() != ".csv":
        return [line.split("#", 1)[0].strip() for line in text.splitlines()
                if line.split("#", 1)[0].strip()]
    import csv
    import io

    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise KdbenchError(f"foundation teacher: {path} is not a readable CSV ({exc})") from None
    header = [h.strip().lower() for h in (rows[0] if rows else [])]
    if CSV_COLUMN not in header:
        raise KdbenchError(
            f"foundation teacher: {path} has no {CSV_COLUMN} column (columns: "
            f"{', '.join(header) or 'none'}); put the ids the checkpoint was trained on in a "
            f"column named {CSV_COLUMN}, or list them one per line in a .txt file")
    column = header.index(CSV_COLUMN)
    return [row[column].strip() for row in rows[1:] if len(row) > column and row[column].strip()]


def _bundle_cases(metadata: Path) -> list[str] | None:
    try:
        found = json.loads(metadata.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KdbenchError(f"foundation teacher: {metadata} is not readable JSON ({exc})"
                           ) from None
    if not isinstance(found, dict) or METADATA_KEY not in found:
        return None
    listed = found[METADATA_KEY]
    if not isinstance(listed, list) or not all(isinstance(c, str) for c in listed):
        raise KdbenchError(
            f"foundation teacher: {metadata}: \"{METADATA_KEY}\" must be a list of case id "
            f"strings, got {type(listed).__name__}")
    return [c.strip() for c in listed if c.strip()]
