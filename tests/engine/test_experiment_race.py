"""Creating the protocol's experiment when another process creates it at the same moment."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from kdbench.tracking import ensure_experiment


def test_the_loser_of_the_creation_race_reads_the_winners_experiment(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    other = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    real_create = client.create_experiment
    winner = {}

    def create_after_the_other_process(name, **kwargs):
        winner["id"] = other.create_experiment(name)  # the other process got there first
        return real_create(name, **kwargs)  # raises RESOURCE_ALREADY_EXISTS

    client.create_experiment = create_after_the_other_process
    assert ensure_experiment(client, "kdbench/x") == winner["id"]
    assert ensure_experiment(client, "kdbench/x") == winner["id"]  # found at once now


def test_other_creation_errors_still_raise(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")

    def broken(name, **kwargs):
        raise MlflowException("no permission")

    client.create_experiment = broken
    with pytest.raises(MlflowException, match="no permission"):
        ensure_experiment(client, "kdbench/y")
