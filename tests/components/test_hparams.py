import pytest

from kdbench import HParam
from kdbench.components.hparams import resolve, search_space

DECLARED = {
    "weight": HParam(0.5, low=0.0, high=1.0),
    "temperature": HParam(4.0, low=1.0, high=20.0, log=True),
    "epochs": HParam(3, low=1, high=10),
    "loss": HParam("mse", choices=("mse", "kl")),
    "flag": HParam(False),
}


def test_resolve_fills_defaults_and_coerces_yaml_strings():
    # YAML 1.1 reads 1e-3 as the string "1e-3": numeric strings are accepted for numbers.
    out = resolve(DECLARED, {"weight": "1e-3", "epochs": 5})
    assert out == {"epochs": 5, "flag": False, "loss": "mse", "temperature": 4.0, "weight": 0.001}
    assert list(out) == sorted(out)


def test_resolve_names_every_problem():
    with pytest.raises(ValueError) as info:
        resolve(DECLARED, {"wieght": 1.0, "loss": "l1", "flag": "yes", "epochs": 2.5})
    text = str(info.value)
    assert "unknown hyper-parameter 'wieght'" in text and "did you mean 'weight'" in text
    assert "'l1' is not one of ['mse', 'kl']" in text
    assert "'flag': expected true or false" in text
    assert "'epochs': expected an integer" in text


def test_declaration_errors():
    with pytest.raises(ValueError, match="not one of the choices"):
        HParam("x", choices=("a", "b"))
    with pytest.raises(ValueError, match="both low and high"):
        HParam(1.0, low=0.0)


def test_search_space_and_optuna_suggestions():
    optuna = pytest.importorskip("optuna")
    assert search_space(DECLARED) == ["epochs", "loss", "temperature", "weight"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = {name: DECLARED[name].suggest(trial, name) for name in DECLARED}
    assert 0.0 <= values["weight"] <= 1.0
    assert 1.0 <= values["temperature"] <= 20.0
    assert isinstance(values["epochs"], int) and 1 <= values["epochs"] <= 10
    assert values["loss"] in ("mse", "kl")
    assert values["flag"] is False  # not tunable: stays at its default
    assert set(trial.params) == {"epochs", "loss", "temperature", "weight"}
