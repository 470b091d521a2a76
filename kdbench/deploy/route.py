"""Routing: for each case, the exported model the benchmark found best for the sequences the
case has (``kdbench predict --model A --model B ... --route REPORT``).

The benchmark's answer is the report's ``results.json``: its summary gives, per scenario,
scored subset, N, strategy, region and metric, the mean over seeds and test cases. A model is
the strategy of its Job (its protocol label) at its N; for a case whose sequences are ``A``,
every (model, subset ``S`` it accepts with ``S`` within ``A``) that the report scored is a
candidate, and the one with the best mean of the protocol's primary region and metric (WT Dice
without a primary endpoint) is chosen: the strategy's benchmarked performance from exactly the
inputs it would read, not the one exported seed's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kdbench.deploy.model_folder import ExportedModel
from kdbench.errors import KdbenchError
from kdbench.modalities import label


@dataclass(frozen=True)
class Choice:
    """A case's route: which model (its index among those given), from which subset, and the
    report's mean that chose it."""

    model: int
    subset: tuple[str, ...]
    strategy: str
    n: int
    score: float


@dataclass(frozen=True)
class Router:
    """The report's scores of each given model's (subset, N, strategy)."""

    models: tuple[ExportedModel, ...]
    region: str
    metric: str
    higher_is_better: bool
    #: (model index, subset) -> (strategy label, N, mean)
    scores: Mapping[tuple[int, tuple[str, ...]], tuple[str, int, float]]

    def choose(self, modalities: Iterable[str]) -> Choice | None:
        """The best-scored candidate for a case with ``modalities`` (the first model given
        among equals), or ``None`` when no model accepts a subset of them."""
        have = set(modalities)
        best: Choice | None = None
        for (index, subset), (strategy, n, score) in sorted(self.scores.items()):
            if not set(subset) <= have:
                continue
            better = best is None or (score > best.score if self.higher_is_better
                                      else score < best.score)
            if better:
                best = Choice(index, subset, strategy, n, score)
        return best


def read_report(path: Path) -> dict:
    """A report's ``results.json`` (``path`` is it, or the report folder holding it)."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise KdbenchError(f"--route {path}: no results.json there; give a report folder "
                           "`kdbench report` wrote, or its results.json") from None
    except json.JSONDecodeError as exc:
        raise KdbenchError(f"--route {file} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "summary" not in data:
        raise KdbenchError(f"--route {file} is not a kdbench report's results.json (no summary)")
    return data


def router(models: Sequence[ExportedModel], report: Path,
           higher_is_better: Mapping[str, bool | None]) -> Router:
    """The router of ``models`` by the report at ``report``.

    Raises:
        KdbenchError: a model that no row of the report scores (another protocol, N or
            strategy), naming it.
    """
    data = read_report(report)
    primary = (data.get("statistics") or {}).get("primary") or {}
    region, metric = primary.get("region", "WT"), primary.get("metric", "dice")
    chosen = [r for r in data["summary"] if r.get("region") == region
              and r.get("metric") == metric and r.get("mean") is not None]
    by_subset = {(r["subset"], int(r["N"]), r["strategy"]): float(r["mean"]) for r in chosen}
    # a model that reads more than its scenario leaves (multi, the upper bound) is reported
    # under the scenario's subset: found through its roles' scenarios
    by_scenario = {(r["scenario"], int(r["N"]), r["strategy"]): float(r["mean"])
                   for r in chosen}
    scores: dict[tuple[int, tuple[str, ...]], tuple[str, int, float]] = {}
    for index, model in enumerate(models):
        tree = model.manifest["model"]
        roles = [tuple(role) for role in model.manifest.get("roles", [])]
        labels = sorted({strategy for strategy, _ in roles})
        n = int(tree["n"])
        found = False
        for subset in model.accepts:
            for strategy, scenario in sorted(roles):
                mean = by_subset.get((label(subset), n, strategy))
                if mean is None and len(model.accepts) == 1:
                    mean = by_scenario.get((scenario, n, strategy))
                if mean is not None:
                    scores[(index, subset)] = (strategy, n, mean)
                    found = True
                    break
        if not found:
            raise KdbenchError(
                f"--route: the report has no {region} {metric} of model {model.folder} "
                f"({', '.join(labels) or tree['component']} at N={tree['n']}); route with the "
                f"report of the protocol it was exported from")
    direction = higher_is_better.get(metric)
    if direction is None:
        raise KdbenchError(f"--route: the primary metric {metric!r} has no direction (a "
                           "descriptive value) and cannot rank models")
    return Router(tuple(models), region, metric, bool(direction), scores)
