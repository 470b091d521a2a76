"""The tuning-cost simulation: how much of a full training a trial runs under kdbench's pruners
(``kdbench.tuning.studies.make_pruner``), decided trial by trial as Optuna's own pruners do
(tested against them). Used by the GPU-hour estimate; imports no heavy library."""

from __future__ import annotations

import math

from kdbench.errors import KdbenchError


def pruned_fraction(pruner: str, epochs: int, validate_every: int = 1, trials: int = 100,
                    study: str = "study", repeats: int = 200) -> float:
    """Expected share of a full training that one of ``trials`` tuning trials runs: the mean
    of :func:`trial_epochs` over ``repeats`` draws of the trials' qualities, over ``epochs``."""
    import random

    if pruner == "none" or epochs <= 1:
        return 1.0
    rng = random.Random(0)
    total = 0
    for _ in range(repeats):
        qualities = [rng.random() for _ in range(trials)]
        total += sum(trial_epochs(pruner, epochs, validate_every, qualities, study))
    return total / (repeats * trials * epochs)


def trial_epochs(pruner: str, epochs: int, validate_every: int, qualities: list[float],
                 study: str = "study", reduction_factor: int = 3) -> list[int]:
    """Epochs each trial trains under kdbench's ``pruner`` (``make_pruner``), the trials run
    one after another, trial ``i`` reporting ``qualities[i]`` at every validated epoch
    (0-based steps ``validate_every - 1``, ``2 * validate_every - 1``, ..., and the last).

    - ``none``: every trial runs in full.
    - ``hyperband``: Optuna's HyperbandPruner over epochs 1..``epochs`` (reduction factor 3):
      the trial's bracket from Optuna's own hash of ``study`` and the trial number; in the
      bracket of early-stopping rate ``s`` the rungs are at steps ``3**(s + k)``, checked at
      the next report, and a trial goes on when Optuna's successive-halving rule promotes it
      among its bracket's trials that reached the rung (the top third; while fewer than three
      did, the best so far).
    - ``median`` (once a trial has completed, from step 1): a trial below the median of the
      completed trials' values at its first checked report stops there.
    """
    import binascii

    if pruner not in ("hyperband", "median", "none"):
        raise KdbenchError(f"unknown pruner {pruner!r}; kdbench knows hyperband, median, none")
    if pruner == "none" or epochs <= 1:
        return [epochs] * len(qualities)

    def stopped_at(step: int) -> int:  # epochs trained when stopped at the check of ``step``
        return min(epochs, math.ceil((step + 1) / validate_every) * validate_every)

    out: list[int] = []
    if pruner == "median":
        import statistics

        complete: list[float] = []
        for q in qualities:
            pruned = bool(complete) and q < statistics.median(complete)
            out.append(stopped_at(1) if pruned else epochs)
            if not pruned:
                complete.append(q)
        return out
    eta = reduction_factor
    n_brackets = math.floor(math.log(epochs, eta) + 1e-9) + 1
    budgets = [math.ceil(n_brackets * eta ** (n_brackets - 1 - b) / (n_brackets - b))
               for b in range(n_brackets)]
    reached: dict[tuple[int, int], list[float]] = {}
    for number, q in enumerate(qualities):
        n = binascii.crc32(f"{study}_{number}".encode()) % sum(budgets)
        bracket = 0
        while n - budgets[bracket] >= 0:  # Optuna's HyperbandPruner._get_bracket_id
            n -= budgets[bracket]
            bracket += 1
        rung, trained = 0, epochs
        while eta ** (bracket + rung) <= epochs - 1:
            competing = reached.setdefault((bracket, rung), [])
            competing.append(q)
            index = max(len(competing) // eta - 1, 0)
            if q < sorted(competing)[-(index + 1)]:
                trained = stopped_at(eta ** (bracket + rung))
                break
            rung += 1
        out.append(trained)
    return out
