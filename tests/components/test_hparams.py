from typing import Literal

import pytest
from pydantic import ValidationError

from kdbench import HParams, Strategy, hparam
from kdbench.components.hparams import search_space


class Declared(HParams):
    weight: float = hparam(0.5, low=0.0, high=1.0, ge=0.0, help="weight of a term",
                           source="my paper")
    temperature: float = hparam(4, low=1.0, high=20.0, log=True)
    epochs: int = hparam(3, low=1, high=10)
    loss: Literal["mse", "kl"] = hparam("mse")
    flag: bool = hparam(False)
    switch: bool = hparam(True, choices=(True, False))
    note: str = hparam("")


def test_resolve_fills_defaults_and_reads_yaml_numeric_strings():
    # YAML 1.1 reads 1e-3 as the string "1e-3": numeric strings are read as numbers.
    out = Declared.resolve({"weight": "1e-3", "epochs": "5", "temperature": 2})
    assert out == {"epochs": 5, "flag": False, "loss": "mse", "note": "", "switch": True,
                   "temperature": 2.0, "weight": 0.001}
    assert list(out) == sorted(out)
    assert type(out["temperature"]) is float  # an int given for a float is stored as a float
    assert type(Declared.resolve({})["temperature"]) is float  # so is an int default


def test_resolve_names_every_problem_strictly():
    with pytest.raises(ValidationError) as info:
        Declared.resolve({"wieght": 1.0, "loss": "l1", "flag": "yes", "epochs": 2.5,
                          "weight": -1.0, "note": 3, "temperature": True})
    problems = {e["loc"][0]: e["type"] for e in info.value.errors()}
    assert problems == {"wieght": "extra_forbidden", "loss": "literal_error",
                        "flag": "bool_type", "epochs": "int_type",
                        "weight": "greater_than_equal", "note": "string_type",
                        "temperature": "float_type"}
    assert isinstance(info.value, ValueError)  # callers that catch ValueError still do


def test_declared_search_space_beside_each_field():
    declared = Declared.declared()
    assert declared["weight"].low == 0.0 and declared["weight"].high == 1.0
    assert declared["weight"].help == "weight of a term"
    assert declared["weight"].source == "my paper"
    assert declared["temperature"].log and declared["temperature"].default == 4.0
    assert declared["loss"].choices == ("mse", "kl")  # a Literal searches its values
    assert declared["epochs"].type is int and declared["note"].type is str
    assert search_space(declared) == ["epochs", "loss", "switch", "temperature", "weight"]
    schema = Declared.model_json_schema()["properties"]["weight"]
    assert schema["x-search"]["low"] == 0.0 and schema["description"] == "weight of a term"


@pytest.mark.parametrize("body, message", [
    ("x: float = hparam(1.0, low=0.0)", "both low and high"),
    ("x: float = hparam(1.0, low=2.0, high=1.0)", "low 2.0 is above high 1.0"),
    ("x: float = hparam(1.0, low=0.0, high=1.0, log=True)", "log-scale search needs low > 0"),
    ("x: str = hparam('a', low=0, high=1)", "low/high need an int or float"),
    ("x: list = hparam([])", "must be bool, int, float, str or a Literal"),
    ("x: float = hparam(...)", "needs a default"),
    ("x: Literal['a', 'b'] = hparam('c')", "a default is not a valid value"),
    ("x: float = hparam(-1.0, ge=0)", "a default is not a valid value"),
    ("x: bool = hparam(True, choices=(True, 'no'))", "a choice is not a valid value"),
])
def test_declaration_errors_at_class_definition(body, message):
    with pytest.raises(TypeError, match=message):
        exec(f"class P(HParams):\n    {body}\n",
             {"HParams": HParams, "hparam": hparam, "Literal": Literal})


def test_component_derives_hparams_and_refuses_the_old_dict():
    class Mine(Strategy):
        """A strategy."""

        name = "mine"
        Params = Declared

    assert Mine.hparams == Declared.declared()
    assert Mine.validate_declaration() == []
    assert Mine.resolve_hparams({"epochs": 4})["epochs"] == 4

    class Old(Strategy):
        """Declared the pre-pydantic way."""

        name = "old"
        hparams = {"weight": 0.5}

    (problem,) = Old.validate_declaration()
    assert "`hparams` is derived from `Params`" in problem and "kdbench.HParams" in problem


def test_search_space_and_optuna_suggestions():
    optuna = pytest.importorskip("optuna")
    declared = Declared.declared()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = {name: declared[name].suggest(trial, name) for name in declared}
    assert 0.0 <= values["weight"] <= 1.0
    assert 1.0 <= values["temperature"] <= 20.0
    assert isinstance(values["epochs"], int) and 1 <= values["epochs"] <= 10
    assert values["loss"] in ("mse", "kl") and values["switch"] in (True, False)
    assert values["flag"] is False  # not tunable: stays at its default
    assert set(trial.params) == {"epochs", "loss", "switch", "temperature", "weight"}
    assert Declared.resolve(values) == {**Declared.resolve({}), **values}  # drawn values valid
