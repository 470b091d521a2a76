"""The slices of the qualitative figure: a few test cases, the input modality, the reference and
each strategy's prediction, read from the Jobs' folders (predictions are files, not records).

Cases: the worst, median and best by the baseline's WT Dice (first strategy without a
baseline), at the largest N and the smallest seed every strategy has there. Slice: the axial
slice with the largest reference tumour (WT) area.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdbench.report.analysis import Analysis


def _labels(path: Path, convention: str) -> np.ndarray:
    import nibabel as nib

    from kdbench.metrics.regions import to_canonical

    return to_canonical(np.asanyarray(nib.load(str(path)).dataobj), convention)


def pick_cases(dice: pd.Series, count: int = 3) -> list[str]:
    """Worst, median and best cases (ids as tie-breakers) of a case -> Dice series."""
    ordered = sorted(dice.items(), key=lambda item: (item[1], item[0]))
    if len(ordered) <= count:
        return [case for case, _ in ordered]
    positions = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i][0] for i in dict.fromkeys(positions.tolist())]


def panels(analysis: Analysis, scenario: str, subset: str, runs_dir: Path, protocol: str,
           dataset: Any, convention: str) -> tuple[list[dict[str, Any]], str]:
    """The panels of :func:`kdbench.report.figures.qualitative`, and a caption; no panels and
    the reason when the Jobs' predictions or the images are not on this machine."""
    import nibabel as nib

    rows = analysis.per_case[(analysis.per_case["scenario"] == scenario)
                             & (analysis.per_case["subset"] == subset)
                             & (analysis.per_case["metric"] == "dice")
                             & (analysis.per_case["region"] == "WT")]
    if rows.empty:
        return [], "no Dice records"
    n = int(rows["N"].max())
    at_n = rows[rows["N"] == n]
    strategies = [s for s in analysis.strategies if s in set(at_n["strategy"])]
    common = set.intersection(*(set(at_n.loc[at_n["strategy"] == s, "seed"])
                                for s in strategies))
    if not common:
        return [], f"no seed at N={n} has every strategy"
    seed = min(common)
    chosen = at_n[at_n["seed"] == seed]
    ranking = analysis.settings.baseline if analysis.settings.baseline in strategies else (
        strategies[0])
    dice = chosen[chosen["strategy"] == ranking].set_index("case")["value"]
    cases = pick_cases(dice)
    folders = {}
    for strategy in strategies:
        job_id = chosen.loc[chosen["strategy"] == strategy, "job_id"].iloc[0]
        folder = Path(runs_dir) / protocol / job_id
        try:
            predictions = json.loads((folder / "done.json").read_text())["predictions"]
        except (OSError, ValueError, KeyError):
            return [], (f"the predictions of Job {job_id} ({strategy}) are not under "
                        f"{folder}; pass the run's --runs-dir")
        relative = predictions.get(subset) or (
            next(iter(predictions.values())) if len(predictions) == 1 else None)
        if relative is None:
            return [], f"Job {job_id} has no predictions for {subset}"
        folders[strategy] = folder / relative
    modality = subset.split("+")[0]
    out = []
    for case in cases:
        try:
            reference = _labels(dataset.reference(case), convention)
            image = np.asanyarray(nib.load(str(dataset.image(case, modality))).dataobj)
            predicted = {s: _labels(folders[s] / f"{case}.nii.gz", convention)
                         for s in strategies}
        except (OSError, KeyError) as exc:
            return [], f"case {case} cannot be read ({exc})"
        area = (reference > 0).reshape(-1, reference.shape[-1]).sum(axis=0)
        z = int(np.argmax(area))
        case_dice = chosen[chosen["case"] == case].set_index("strategy")["value"]
        out.append({"case": case, "modality": modality, "image": image[..., z].astype(float),
                    "reference": reference[..., z],
                    "predictions": {s: p[..., z] for s, p in predicted.items()},
                    "dice": {s: float(case_dice.get(s, np.nan)) for s in strategies}})
    caption = (f"{subset} ({scenario}), N={n}, seed {seed}: worst, median and best test case by "
               f"{ranking}'s WT Dice; axial slice of the largest reference tumour area")
    return out, caption
