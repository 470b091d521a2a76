"""The report's figures (matplotlib, Agg), each saved as PNG and SVG.

Saving is deterministic: no creation date in either file, a fixed SVG hash salt, fixed DPI and
size, colours fixed by each strategy's place in the protocol.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kdbench.report.analysis import Analysis

DPI = 110
STYLE = {"svg.hashsalt": "kdbench", "svg.fonttype": "path", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.3, "legend.frameon": False}
METRIC_NAMES = {"dice": "Dice", "hd95": "HD95 (mm)"}


@contextmanager
def plotting() -> Iterator[Any]:
    """matplotlib (Agg) with the report's style, from matplotlib's defaults: whatever else
    changed the global settings in this process (nnU-Net's progress plot calls
    ``seaborn.set(font_scale=2.5)``, which also re-maps the colour codes) leaves the
    report's figures unchanged."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    named = matplotlib.colors.get_named_colors_mapping()  # seaborn also re-maps "k", "b", ...
    saved = {code: named[code] for code in matplotlib.colors.BASE_COLORS}
    named.update(matplotlib.colors.BASE_COLORS)
    try:
        with plt.style.context(["default", STYLE]):
            yield plt
    finally:
        named.update(saved)


def save(fig: Any, folder: Path, name: str) -> list[Path]:
    """``<name>.png`` and ``<name>.svg``, without dates; closes the figure."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    fig.savefig(png, dpi=DPI, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return [png, svg]


def colours(strategies: list[str]) -> dict[str, Any]:
    """One colour per strategy, by its place in the protocol."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    return {s: palette[i % len(palette)] for i, s in enumerate(strategies)}


def _log_axis(ax: Any, sizes: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training cases N")


def learning_curves(analysis: Analysis, scenario: str, subset: str, metric: str) -> Any:
    """Metric vs N (log x), one line per strategy, the band its two-way bootstrap CI (seeds and
    cases resampled); one panel per region."""
    part = analysis.summary[(analysis.summary["scenario"] == scenario)
                            & (analysis.summary["subset"] == subset)
                            & (analysis.summary["metric"] == metric)]
    regions = [r for r in ("WT", "TC", "ET") if r in set(part["region"])]
    sizes = sorted(int(n) for n in part["N"].unique())
    colour = colours(analysis.strategies)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(regions), figsize=(3.3 * len(regions), 3.0), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, region in zip(axes[0], regions, strict=True):
        for strategy in analysis.strategies:
            line = part[(part["region"] == region) & (part["strategy"] == strategy)].sort_values(
                "N")
            if line.empty:
                continue
            ax.plot(line["N"], line["mean"], "o-", color=colour[strategy], label=strategy,
                    markersize=3.5, linewidth=1.4)
            ax.fill_between(line["N"], line["low"], line["high"],
                            color=colour[strategy], alpha=0.15, linewidth=0)
        _log_axis(ax, sizes)
        ax.set_title(region)
    axes[0][0].set_ylabel(METRIC_NAMES.get(metric, metric))
    axes[0][-1].legend(loc="best", fontsize=8)
    fig.suptitle(f"{METRIC_NAMES.get(metric, metric)} vs N — {subset} ({scenario}); "
                 "band: 95% CI over seeds and cases", fontsize=9)
    return fig


def gain_curves(analysis: Analysis, scenario: str, subset: str, metric: str = "dice"
                ) -> Any | None:
    """The gain over the baseline vs N (positive = better): the mean over seeds and cases with
    its run-level 95% CI, the margin ±δ (shaded) and N*_δ (dotted line); one panel per
    region."""
    keys = [k for k in analysis.benefit
            if k[0] == scenario and k[1] == subset and k[4] == metric]
    if not keys:
        return None
    regions = [r for r in ("WT", "TC", "ET") if any(k[3] == r for k in keys)]
    strategies = [s for s in analysis.strategies if any(k[2] == s for k in keys)]
    colour = colours(analysis.strategies)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(regions), figsize=(4.2 * len(regions), 3.4), sharey=True,
                             squeeze=False, layout="constrained")
    margin = analysis.settings.margin.get(metric)
    for ax, region in zip(axes[0], regions, strict=True):
        ax.axhline(0, color="0.3", linewidth=0.8)
        if margin is not None:
            ax.axhspan(-margin, margin, color="0.9", zorder=0)
        sizes: list[int] = []
        for strategy in strategies:
            result = analysis.benefit.get((scenario, subset, strategy, region, metric))
            if result is None:
                continue
            per_n = result.per_n
            sizes = sorted(set(sizes) | {int(n) for n in per_n["N"]})
            finite = per_n[np.isfinite(per_n["gain_low"]) & np.isfinite(per_n["gain_high"])]
            ax.errorbar(finite["N"], finite["gain"],
                        yerr=[finite["gain"] - finite["gain_low"],
                              finite["gain_high"] - finite["gain"]],
                        fmt="o", color=colour[strategy], capsize=2, markersize=3.5,
                        label=f"{strategy} (N*δ {result.n_star_label()})")
            curve = result.curve.curve if result.curve is not None else None
            if curve is not None and not curve.empty:
                # drawn to twice the largest N: far extrapolations only squeeze the data
                curve = curve[curve["N"] <= 2 * result.curve.largest]
                measured = curve[~curve["extrapolated"]]
                beyond = curve[curve["N"] >= measured["N"].max()]
                ax.plot(measured["N"], measured["gain"], "-", color=colour[strategy],
                        linewidth=1)
                ax.plot(beyond["N"], beyond["gain"], "--", color=colour[strategy],
                        linewidth=1)
                ax.fill_between(curve["N"], curve["low"], curve["high"],
                                color=colour[strategy], alpha=0.12, linewidth=0)
            if isinstance(result.n_star, int) and result.n_star > min(sizes):
                ax.axvline(result.n_star, color=colour[strategy], linestyle=":", linewidth=1)
        _log_axis(ax, sizes)
        ax.set_title(region)
    axes[0][0].set_ylabel(f"{METRIC_NAMES.get(metric, metric)} gain over "
                          f"{analysis.settings.baseline}")
    for ax in axes[0]:
        ax.legend(loc="best", fontsize=7)
    shaded = f", grey: ±δ = {margin:g}" if margin is not None else ""
    title = (f"Gain over {analysis.settings.baseline} vs N — {subset} ({scenario}); bars: 95% "
             f"CI, seeds as replicates; line: fitted learning curves' difference, dashed where "
             f"extrapolated{shaded}")
    fig.suptitle("\n".join(textwrap.wrap(title, 60 * len(regions))), fontsize=8)
    return fig


def rank_stability_plot(analysis: Analysis, scenario: str, subset: str,
                        metric: str = "dice") -> Any | None:
    """challengeR's blob plot: per region (rows) and N (columns), each strategy's share of
    bootstrap resamples at each rank (area), the full-data rank marked by a cross."""
    keys = sorted((k for k in analysis.stability if k[0] == scenario and k[1] == subset
                   and k[4] == metric), key=lambda k: (("WT", "TC", "ET").index(k[3]), k[2]))
    if not keys:
        return None
    regions = list(dict.fromkeys(k[3] for k in keys))
    sizes = sorted({k[2] for k in keys})
    colour = colours(analysis.strategies)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(regions), len(sizes),
                             figsize=(1.2 + 1.6 * len(sizes), 0.6 + 1.9 * len(regions)),
                             squeeze=False, layout="constrained")
    for key in keys:
        ax = axes[regions.index(key[3])][sizes.index(key[2])]
        stability = analysis.stability[key]
        names = list(stability.frequencies.index)
        for x, name in enumerate(names):
            shares = stability.frequencies.loc[name]
            ranks = [r for r in shares.index if shares[r] > 0]
            ax.scatter([x] * len(ranks), ranks, s=[400 * shares[r] for r in ranks],
                       color=colour[name], alpha=0.6, linewidths=0)
            ax.scatter([x], [stability.ranking[name]], marker="x", color="black", s=18,
                       linewidths=0.8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(len(names) + 0.6, 0.4)
        ax.set_yticks(range(1, len(names) + 1))
        ax.set_title(f"{key[3]}, N={key[2]} (τ {stability.kendall_tau_median:.2f})", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("rank")
    fig.suptitle(f"Rank stability ({METRIC_NAMES.get(metric, metric)}) — {subset} "
                 f"({scenario})\narea: share of bootstrap resamples; ×: rank on all cases",
                 fontsize=9)
    return fig


def cd_diagrams(analysis: Analysis, scenario: str, subset: str,
                metric: str = "dice") -> Any | None:
    """Critical-difference diagrams (scikit-posthocs): mean ranks over cases, strategies joined
    when Nemenyi finds no significant difference; one per (N, region)."""
    keys = sorted((k for k in analysis.friedman if k[0] == scenario and k[1] == subset
                   and k[4] == metric), key=lambda k: (k[2], ("WT", "TC", "ET").index(k[3])))
    if not keys:
        return None
    import matplotlib.pyplot as plt
    import scikit_posthocs as sp

    colour = colours(analysis.strategies)
    fig, axes = plt.subplots(len(keys), 1, figsize=(6.0, 1.15 * len(keys) + 0.4),
                             squeeze=False, layout="constrained")
    for ax, key in zip(axes[:, 0], keys, strict=True):
        result = analysis.friedman[key]
        drawn = sp.critical_difference_diagram(result.ranks, result.nemenyi, ax=ax,
                                               alpha=analysis.settings.alpha,
                                               color_palette={s: colour[s] for s in result.ranks})
        _stable_crossbars(ax, [line for bar in drawn["crossbars"] for line in bar])
        ax.set_title(f"N={key[2]}, {key[3]}: Friedman p = {result.p:.3g}, "
                     f"CD = {result.critical_difference:.2f}", fontsize=8)
    fig.suptitle(f"Critical-difference diagrams ({METRIC_NAMES.get(metric, metric)}, "
                 f"Nemenyi α = {analysis.settings.alpha}) — {subset} ({scenario})", fontsize=9)
    return fig


def _stable_crossbars(ax: Any, lines: list[Any]) -> None:
    """scikit-posthocs draws each crossbar through a ``set`` of names, whose order changes with
    Python's per-process string hashing: same picture, other bytes. Points sorted by rank and
    lines re-added in a fixed order make the file the same in every process."""
    for line in lines:
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        order = np.argsort(x, kind="stable")
        line.set_data(x[order], y[order])
        line.remove()
    for line in sorted(lines, key=lambda ln: (float(ln.get_ydata()[0]), tuple(ln.get_xdata()))):
        ax.add_line(line)


def qualitative(panels: list[dict[str, Any]], strategies: list[str], title: str) -> Any:
    """One axial slice per case (rows): the input modality, the reference and each strategy's
    prediction, tumour regions overlaid (edema green, necrotic core yellow, enhancing red).

    Args:
        panels: per case ``{"case", "modality", "image" (2-D), "reference" (2-D canonical
            labels), "predictions": {strategy: 2-D canonical labels}, "dice": {strategy: WT
            Dice}}``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    overlay = ListedColormap([(0, 0, 0, 0), (0.1, 0.8, 0.2, 0.55), (1.0, 0.85, 0.1, 0.65),
                              (0.9, 0.1, 0.1, 0.75)])
    columns = 2 + len(strategies)
    fig, axes = plt.subplots(len(panels), columns, figsize=(1.7 * columns, 1.8 * len(panels)),
                             squeeze=False, layout="constrained")
    for row, panel in zip(axes, panels, strict=True):
        image = panel["image"]
        low, high = np.percentile(image, [1, 99]) if image.size else (0, 1)
        shown = [(f"{panel['modality']}", None), ("reference", panel["reference"])]
        shown += [(f"{s} (WT {panel['dice'].get(s, float('nan')):.2f})",
                   panel["predictions"].get(s)) for s in strategies]
        for ax, (name, labels) in zip(row, shown, strict=True):
            ax.imshow(image.T, cmap="gray", vmin=low, vmax=high, origin="lower")
            if labels is not None:
                ax.imshow(labels.T, cmap=overlay, vmin=0, vmax=3, origin="lower",
                          interpolation="nearest")
            ax.set_title(name, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        row[0].set_ylabel(panel["case"], fontsize=7)
    fig.suptitle(textwrap.fill(title, 25 * columns), fontsize=9)
    return fig
