"""``kdbench export``: a finished Job as a self-contained model folder with its model card.

The folder needs neither ``runs/``, MLflow nor the prepared dataset (docs/predict.md). The same
Job exports byte-identical files: JSON with sorted keys and no timestamps, weights in
safetensors, a zip with fixed entry dates.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdbench.components.requests import ExportRequest, TrainedModel
from kdbench.deploy.model_folder import (
    CARD_JSON,
    CARD_MD,
    CATEGORIES,
    FORMAT,
    MANIFEST,
    write_checksums,
)
from kdbench.engine.job import finished, strategy_of, trained_dependencies
from kdbench.errors import KdbenchError
from kdbench.registry import Registry
from kdbench.types import Job, Plan

#: Distributions whose versions the model card records.
PACKAGES = ("kdbench", "torch", "nnunetv2", "dynamic-network-architectures", "numpy",
            "safetensors", "nibabel", "SimpleITK", "monai")
INTENDED_USE = (
    "Research use: segmentation of glioma sub-regions (WT, TC, ET) in skull-stripped, "
    "co-registered brain MRI of the modalities listed under `accepts`, in the conditions of "
    "the training data. Not a medical device; its output is not a diagnosis.")
LIMITS = (
    "Scores are those of one trained model (one seed) on the protocol's test set, with CIs over "
    "test cases: they are conditional on this model and say nothing about the spread over "
    "training runs (see the benchmark's report for that). Inputs must be preprocessed like the "
    "training data (skull-stripped, co-registered; BraTS: SRI-24 space at 1 mm). Performance "
    "on other scanners, protocols, populations or pathologies is not measured here.")


def select_job(plan: Plan, job_id: str | None = None, strategy: str | None = None,
               n: int | None = None, seed: int | None = None, scenario: str | None = None
               ) -> Job:
    """The Job named by ``job_id``, or the strategy Job of (label, N, seed, scenario); the
    scenario may be left out when the protocol has one.

    Raises:
        KdbenchError: no such Job, or several (naming what to add).
    """
    if job_id is not None:
        match = [j for j in plan.jobs if j.id == job_id]
        if not match:
            raise KdbenchError(f"no Job {job_id!r} in protocol {plan.protocol.name!r}; see "
                               "`kdbench plan` (or give --strategy, --n and --seed)")
        return match[0]
    if strategy is None or n is None or seed is None:
        raise KdbenchError("name the Job with --job ID, or with --strategy, --n and --seed "
                           "(and --scenario when the protocol has several)")
    found = {(j.id, r.scenario): j for j in plan.jobs if j.n == n and j.seed == seed
             for r in j.strategy_roles
             if r.label == strategy and scenario in (None, r.scenario)}
    labels = sorted({r.label for j in plan.jobs for r in j.strategy_roles})
    if not found:
        raise KdbenchError(f"no {strategy} Job at N={n}, seed {seed}"
                           + (f", scenario {scenario}" if scenario else "")
                           + f" in protocol {plan.protocol.name!r} (strategies: "
                           f"{', '.join(labels)}); see `kdbench plan`")
    jobs = {j.id: j for j in found.values()}
    if len(jobs) > 1:
        scenarios = sorted({s for _, s in found})
        raise KdbenchError(f"{strategy} at N={n}, seed {seed} is several Jobs (scenarios "
                           f"{', '.join(scenarios)}); add --scenario or give --job")
    return next(iter(jobs.values()))


def _category(job: Job, registry: Registry) -> str:
    return next(c for c in CATEGORIES if job.component in registry.categories[c])


def model_tree(job: Job, plan: Plan, registry: Registry) -> dict[str, Any]:
    """The manifest's description of ``job`` and the Jobs it was built from."""
    cls = type(strategy_of(job, registry))
    return {"component": job.component, "category": _category(job, registry),
            "version": str(cls.version), "hparams": job.hparams,
            "modalities": job.modalities.to_json(), "job": job.id, "n": job.n,
            "seed": job.seed,
            "dependencies": {role: model_tree(plan.job(dep), plan, registry)
                             for role, dep in sorted(job.depends_on.items())}}


def packages() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (those installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def test_scores(per_case: Path, definitions: dict[str, str]) -> dict[str, Any]:
    """Mean and 95 % CI (Student t over test cases) of each (subset, region, metric) of a
    Job's ``per_case.csv``: conditional on the trained model."""
    from scipy import stats

    frame = pd.read_csv(per_case)
    out: dict[str, Any] = {}
    for (subset, region, metric), group in frame.groupby(["subset", "region", "metric"],
                                                          sort=True):
        values = group["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        entry: dict[str, Any] = {"cases": int(len(values)), "finite": int(len(finite))}
        if len(finite):
            mean = float(finite.mean())
            entry["mean"] = round(mean, 6)
            if len(finite) > 1:
                low, high = stats.t.interval(0.95, len(finite) - 1, loc=mean,
                                             scale=stats.sem(finite))
                entry["ci95"] = [round(float(low), 6), round(float(high), 6)]
        out.setdefault(subset, {}).setdefault(region, {})[metric] = entry
    return {"scores": out, "ci": "95 % Student t interval over test cases, conditional on this "
            "trained model (not over training runs)", "metrics": definitions}


def model_card(job: Job, plan: Plan, registry: Registry, data: Any, done: Any
               ) -> dict[str, Any]:
    """The facts of ``MODEL_CARD.md``: provenance, budget, test scores, intended use, limits."""
    protocol = plan.protocol
    roles = sorted(str(r) for r in job.roles)
    metrics = {m: registry.metrics.get(m).definition
               for m in protocol.metrics or registry.metrics.names()}
    per_case = Path(done.path) / "per_case.csv"
    return {
        "model": {"strategy": job.component, "job": job.id, "n": job.n, "seed": job.seed,
                  "roles": roles, "hparams": job.hparams,
                  "accepts": [list(s) for s in job.modalities.evaluate],
                  "trained_on": list(job.modalities.training)},
        "protocol": {"name": protocol.name, "version": protocol.version,
                     "description": " ".join(protocol.description.split())},
        "dataset": {"name": data.dataset.name,
                    "fingerprint": data.dataset.marker.get("fingerprint"),
                    "label_convention": data.dataset.marker["label_convention"],
                    "test_cases": len(data.splits.test)},
        "split": {"seed_hash": data.splits.seed_hash(job.seed),
                  "train_cases": len(done.record.get("train_cases", []))},
        "training": protocol.training.model_dump(mode="json"),
        "backbone": {"name": protocol.backbone.name, "options": protocol.backbone.options},
        "test": test_scores(per_case, metrics) if per_case.is_file() else None,
        "pretraining": done.record.get("pretraining"),
        "packages": packages(),
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    }


def card_markdown(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md``: the card's facts for people."""
    model, test = card["model"], card["test"]
    lines = [
        f"# Model card: {model['strategy']} (Job {model['job']})", "",
        f"Protocol **{card['protocol']['name']}** v{card['protocol']['version']}: "
        f"{card['protocol']['description']}", "",
        "## Model", "",
        f"- Strategy `{model['strategy']}`, N = {model['n']} training cases, seed "
        f"{model['seed']}; roles: {', '.join(model['roles'])}.",
        f"- Accepts: {'; '.join('+'.join(s) for s in model['accepts'])} "
        f"(trained with {'+'.join(model['trained_on'])}).",
        f"- Hyper-parameters: `{json.dumps(model['hparams'], sort_keys=True)}`.",
        f"- Backbone {card['backbone']['name']} "
        f"`{json.dumps(card['backbone']['options'], sort_keys=True)}`; training "
        f"`{json.dumps(card['training'], sort_keys=True)}`.",
        f"- Dataset {card['dataset']['name']} (fingerprint {card['dataset']['fingerprint']}, "
        f"labels {card['dataset']['label_convention']}); split seed hash "
        f"{card['split']['seed_hash']}.", "",
        "## Test scores", "",
    ]
    if test is None:
        lines += ["No per-case scores were recorded for this Job.", ""]
    else:
        lines += [f"{test['ci']}; {card['dataset']['test_cases']} test cases.", "",
                  "| subset | region | metric | mean | 95 % CI | cases |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for subset, regions in test["scores"].items():
            for region, metrics in regions.items():
                for metric, e in metrics.items():
                    ci = ("{:.3f} to {:.3f}".format(*e["ci95"]) if "ci95" in e else "")
                    mean = f"{e['mean']:.3f}" if "mean" in e else "n/a"
                    lines.append(f"| {subset} | {region} | {metric} | {mean} | {ci} | "
                                 f"{e['finite']}/{e['cases']} |")
        lines += ["", "Metrics:", ""]
        lines += [f"- `{m}`: {d}" for m, d in test["metrics"].items()]
        lines.append("")
    lines += ["## Intended use", "", card["intended_use"], "", "## Limits", "",
              card["limits"], "", "## Software", "",
              ", ".join(f"{k} {v}" for k, v in card["packages"].items()), ""]
    return "\n".join(lines)


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def export_job(job: Job, plan: Plan, registry: Registry, data: Any, runs_dir: Path, out: Path,
               *, as_zip: bool = False, overwrite: bool = False) -> Path:
    """Write Job ``job``'s model folder at ``out`` (or ``out`` as a zip); returns the path.

    Raises:
        KdbenchError: the Job (or one it depends on) has not finished, or ``out`` exists and
            ``overwrite`` is not set.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise KdbenchError(f"{out} exists; choose another --out or add --overwrite")
    done = finished(runs_dir, plan, job)
    if done is None:
        raise KdbenchError(f"Job {job.id} ({job.component}, N={job.n}, seed {job.seed}) has not "
                           f"finished; run protocol {plan.protocol.name!r} first")
    trained = TrainedModel(strategy_of(job, registry), done.checkpoint,
                           trained_dependencies(job, plan, registry, runs_dir))
    protocol = plan.protocol
    backbone_cls = registry.backbones.get(protocol.backbone.name)
    options = backbone_cls.validate_options(protocol.backbone.options)
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "backbone").mkdir(parents=True)
    try:
        described = backbone_cls().export(ExportRequest(
            trained=trained, dataset=data.dataset, options=options, dest=staging / "backbone"))
        card = model_card(job, plan, registry, data, done)
        _dump(staging / MANIFEST, {
            "kdbench_model": FORMAT,
            "backbone": {"name": protocol.backbone.name,
                         "version": str(backbone_cls.version), "export": described},
            "model": model_tree(job, plan, registry),
            "accepts": [list(s) for s in job.modalities.evaluate],
            # the protocol's labels this Job is scored under (a report's rows; routing)
            "roles": sorted({(r.label, r.scenario) for r in job.strategy_roles}),
            "label_convention": data.dataset.marker["label_convention"],
            "primary_metric": _primary_metric(plan),
        })
        _dump(staging / CARD_JSON, card)
        (staging / CARD_MD).write_text(card_markdown(card))
        write_checksums(staging)
        if as_zip:
            _zip(staging, out)
            shutil.rmtree(staging)
        else:
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _primary_metric(plan: Plan) -> str:
    primary = plan.protocol.statistics.primary
    return primary.metric if primary is not None else "dice"


def _zip(folder: Path, target: Path) -> None:
    """A zip of ``folder``'s files, sorted, with fixed dates and modes (reproducible)."""
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    os.replace(partial, target)
