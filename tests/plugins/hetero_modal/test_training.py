"""A short CPU training of hemis and uhved on the phantom through nnU-Net's trainer, then
predictions from several subsets."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from kdbench.components.requests import ModelRequest, PredictRequest, TrainedModel, TrainRequest
from kdbench.modalities import MODALITIES
from kdbench.types import Budget, ModalityUse
from kdbench_plugins.nnunet_backbone import NnUNetBackbone, NnUNetOptions

SUBSETS = (("t1ce",), ("t1", "flair"), MODALITIES)


@pytest.mark.parametrize("name", ["hemis", "uhved"])
def test_short_training_then_every_subset_predicts(prepared_phantom, registry, tmp_path, name):
    cls = registry.strategies.get(name)
    strategy = cls({k: v.default for k, v in cls.hparams.items()},
                   ModalityUse(MODALITIES, SUBSETS))
    ids = list(prepared_phantom.cases)
    reports = []
    backbone = NnUNetBackbone()
    result = backbone.train(TrainRequest(
        strategy=strategy, dataset=prepared_phantom, train_cases=tuple(ids[:6]),
        val_cases=tuple(ids[6:8]), budget=Budget(2, 3, 1), options=NnUNetOptions(),
        output_dir=tmp_path, seed=0, callbacks=[reports.append]))
    assert result.epochs == 2 and [r.epoch for r in reports] == [0, 1]
    terms = set(reports[-1].train_terms)
    expected = {"loss", "supervised", "kl_inter", "kl_prior", "reconstruction"} \
        if name == "uhved" else {"loss"}
    assert expected <= terms
    assert all(np.isfinite(v) for v in reports[-1].train_terms.values())

    trained = TrainedModel(strategy, result.checkpoint)
    model = backbone.load_model(ModelRequest(trained=trained, dataset=prepared_phantom,
                                              options=NnUNetOptions()))
    assert len(model.encoders) == 4
    cases = ids[8:]
    for subset in SUBSETS:
        written = backbone.predict(PredictRequest(
            trained=trained, dataset=prepared_phantom, options=NnUNetOptions(),
            case_ids=tuple(cases), available=subset, out_dir=tmp_path / "pred" / "+".join(subset)))
        assert sorted(written) == sorted(cases)
        for path in written.values():
            labels = np.asanyarray(nib.load(path).dataobj)
            assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}
