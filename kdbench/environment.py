"""The machine and software a result was computed with, recorded beside it.

Training on a CPU is deterministic on one machine, not across machines: oneDNN and MKL pick
their kernels by the CPU's instruction set (AVX2, AVX-512, ...), and a different kernel sums in
a different order. The same Job on two machines can therefore differ in the third decimal of a
Dice (docs/reproducibility.md). Every MLflow run and every report records what this module
describes, so two numbers can be told apart by where they were computed.

``describe`` is cheap and imports nothing heavy; with ``torch=True`` it adds torch's BLAS,
CPU capability, threads and GPU (for the training process, which has torch loaded anyway).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
from importlib import metadata
from typing import Any

# The packages a result depends on most, also recorded as MLflow tags (the rest: artefact).
KEY_PACKAGES = ("kdbench", "torch", "nnunetv2", "monai", "numpy", "scipy", "mlflow", "optuna",
                "SimpleITK", "batchgeneratorsv2", "dynamic-network-architectures")


def installed_versions() -> dict[str, str]:
    """Every installed distribution, name -> version, sorted by lower-cased name."""
    versions = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            versions.setdefault(name, dist.version)
    return dict(sorted(versions.items(), key=lambda item: item[0].lower()))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.26 has no dict mode: not worth failing a run over
        return "unknown"


def _torch_facts() -> dict[str, Any]:
    import torch

    config = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for line in config.splitlines()
                 for part in line.replace(",", " ").split() if part.startswith("BLAS_INFO=")),
                "unknown")
    facts: dict[str, Any] = {
        "torch_blas": blas,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": None,
    }
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        facts["gpu"] = ", ".join(names)
    return facts


@functools.cache
def describe(*, torch: bool = False) -> dict[str, Any]:
    """The machine and the resolved versions.

    Args:
        torch: also torch's BLAS, CPU capability, thread count and GPU (imports torch).

    Returns:
        ``machine`` (CPU, cores, OS, Python, BLAS; GPU with ``torch``), ``packages``
        (:data:`KEY_PACKAGES` that are installed), ``versions`` (every distribution) and
        ``versions_sha256`` (a hash of ``versions``, equal for two identical installs);
        computed once per process (treat it as read-only).
    """
    versions = installed_versions()
    machine: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine(),
        "os": platform.platform(), "python": sys.version.split()[0],
        "numpy_blas": _numpy_blas(),
    }
    if torch:
        machine.update(_torch_facts())
    lower = {name.lower(): (name, version) for name, version in versions.items()}
    packages = {lower[p.lower()][0]: lower[p.lower()][1] for p in KEY_PACKAGES
                if p.lower() in lower}
    digest = hashlib.sha256("\n".join(f"{k}=={v}" for k, v in versions.items()).encode())
    return {"machine": machine, "packages": packages, "versions": versions,
            "versions_sha256": digest.hexdigest()}


def tags(environment: dict[str, Any]) -> dict[str, str]:
    """MLflow tags for ``environment`` (a :func:`describe` result): the machine, the key
    packages and the hash of all versions (the full list goes into an artefact)."""
    out = {f"kdbench.machine.{k}": str(v) for k, v in environment["machine"].items()
           if v is not None}
    out.update({f"kdbench.package.{k}": v for k, v in environment["packages"].items()})
    out["kdbench.versions_sha256"] = environment["versions_sha256"]
    return out


def from_tags(run_tags: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The :func:`tags` among a run's tags, ``kdbench.`` removed, sorted: equal for two runs
    computed on the same machine and install (empty for runs from before they were tagged)."""
    return tuple(sorted((k.removeprefix("kdbench."), v) for k, v in run_tags.items()
                        if k.startswith(("kdbench.machine.", "kdbench.package."))
                        or k == "kdbench.versions_sha256"))
