"""The end-to-end benchmark's data (``e2e_benchmark.py``): synthetic BraTS-shaped phantom
cases, upsampled, preprocessed by nnU-Net and saved as an nnU-Net preprocessed dataset.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
from pathlib import Path
from typing import Any

from bench_setup import CONFIGURATION, import_checkout

MODALITY_KEYS = ("t1", "t1ce", "t2", "flair")


def write_case(job: tuple[Any, ...]) -> dict[str, Any]:
    """One phantom case, upsampled, preprocessed by nnU-Net's DefaultPreprocessor and saved as
    nnU-Net saves it (blosc2, chunks and blocks for the patch size). Runs in a worker."""
    index, seed, grid, upsample, anatomy, folder, plans, dataset_json = job
    import_checkout()
    import numpy as np
    import torch
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import (
        comp_blosc2_params,
        nnUNetDatasetBlosc2,
    )
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kdbench.cases import LABEL_MAPS
    from kdbench_plugins.phantom.build import resolve_anatomy, synthesise_case

    arrays, _, _ = synthesise_case(index, seed, tuple(grid), resolve_anatomy(anatomy))
    data = np.stack([arrays[k] for k in MODALITY_KEYS]).astype(np.float32)
    lookup = np.zeros(256, dtype=np.int16)
    for source, canonical in LABEL_MAPS["brats2021"].items():
        lookup[source] = canonical
    seg = lookup[arrays["seg"]][None]
    if upsample > 1:
        shape = [s * upsample for s in grid]
        data = torch.nn.functional.interpolate(torch.from_numpy(data)[None], shape,
                                               mode="trilinear")[0].numpy()
        seg = torch.nn.functional.interpolate(torch.from_numpy(seg.astype(np.float32))[None],
                                              shape, mode="nearest")[0].numpy().astype(np.int16)
    manager = PlansManager(plans)
    config = manager.get_configuration(CONFIGURATION)
    with contextlib.redirect_stdout(io.StringIO()):
        data, seg, properties = DefaultPreprocessor(verbose=False).run_case_npy(
            data, seg, {"spacing": [1.0, 1.0, 1.0]}, manager, config, dataset_json)
    data, seg = data.astype(np.float32), seg.astype(np.int16)
    blocks, chunks = comp_blosc2_params(data.shape, tuple(config.patch_size), data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(config.patch_size),
                                                seg.itemsize)
    case = f"case_{index:03d}"
    nnUNetDatasetBlosc2.save_case(data, seg, properties, str(Path(folder) / case),
                                  chunks=chunks, blocks=blocks, chunks_seg=chunks_seg,
                                  blocks_seg=blocks_seg)
    return {"case": case, "shape": list(data.shape)}


def write_dataset(folder: Path, preset: dict[str, Any], plans: dict[str, Any],
                  dataset_json: dict[str, Any], seed: int, processes: int) -> list[dict]:
    """The preset's cases in nnU-Net's preprocessed layout under ``folder`` (in parallel)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, preset["grid"], preset["upsample"], preset["anatomy"], str(folder),
             plans, dataset_json) for i in range(preset["cases"])]
    processes = max(1, min(processes, len(jobs)))
    if processes == 1:
        return [write_case(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(write_case, jobs)
