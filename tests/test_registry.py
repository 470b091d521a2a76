import pytest

from kdbench import Dataset, Strategy
from kdbench.errors import PluginError
from kdbench.registry import CategoryRegistry, Registry


class Alpha(Strategy):
    """First."""

    name = "alpha"


class AlphaAgain(Strategy):
    """Same name, other class."""

    name = "alpha"


def test_add_get_and_decorator_use():
    reg = CategoryRegistry("strategies", Strategy)
    assert reg.add(Alpha) is Alpha
    reg.add(Alpha)  # the same class twice is harmless
    assert reg.get("alpha") is Alpha and "alpha" in reg and len(reg) == 1

    @reg.add
    class Beta(Strategy):
        """Second."""

        name = "beta"

    assert reg.names() == ["alpha", "beta"]


def test_unknown_name_suggests_the_closest():
    reg = CategoryRegistry("strategies", Strategy)
    reg.add(Alpha)
    with pytest.raises(KeyError, match=r"unknown strategy 'alpah' \(registered: alpha\); did you"):
        reg.get("alpah")


def test_duplicate_and_wrong_base():
    reg = CategoryRegistry("strategies", Strategy)
    reg.add(Alpha)
    with pytest.raises(PluginError, match="two strategies are named 'alpha'"):
        reg.add(AlphaAgain)
    datasets = CategoryRegistry("datasets", Dataset)
    with pytest.raises(PluginError, match="not a subclass of kdbench.Dataset"):
        datasets.add(Alpha)


def test_registry_json_lists_components(registry):
    out = registry.to_json()
    assert out["components"]["strategies"]["kd"]["requires"] == {"teacher": "multi"}
    kd_hparams = out["components"]["strategies"]["kd"]["hparams"]
    assert kd_hparams["temperature"]["default"] == 10.0 and kd_hparams["temperature"]["source"]
    assert set(out["components"]) == set(Registry().categories)
