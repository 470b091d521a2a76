"""Tuning: one Optuna study per (strategy, scenario, tuning N) with one trial budget for every
strategy, search spaces declared by the strategies, pruning on validation Dice, and the best
parameters used by ``kdbench run`` for ``hparams: tuned`` (docs/tuning.md).

``studies``: which studies a protocol has, their storage, and what a tuned Job takes from them;
``tune``: running them (``worker``: one worker's trial loop; ``launch``: ``--workers K``
processes; ``record``: their MLflow record).
"""
