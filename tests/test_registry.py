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


def _refused(category: str, cls: type, *fragments: str) -> None:
    registry = Registry()
    with pytest.raises(PluginError) as caught:
        registry.categories[category].add(cls)
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_a_teacher_that_cannot_train_is_refused_at_registration():
    from kdbench import Teacher

    class Lonely(Teacher):
        """Only a teacher."""

        name = "lonely"

    _refused("teachers", Lonely, "Lonely", "must also derive from kdbench.Strategy",
             "class Lonely(Strategy, Teacher)")

    class Trainable(Strategy, Teacher):
        """A teacher that trains."""

        name = "trainable"

    assert Registry().teachers.add(Trainable) is Trainable


def test_a_generator_must_train_and_synthesise():
    from kdbench import Generator

    class Bare(Generator):
        """Nothing."""

        name = "bare_gen"

    _refused("generators", Bare, "must also derive from kdbench.Strategy",
             "must implement synthesise")

    class NoSynthesis(Strategy, Generator):
        """Trains, cannot synthesise."""

        name = "no_synth"

    _refused("generators", NoSynthesis, "must implement synthesise")
    assert "must also derive" not in " ".join(NoSynthesis.validate_declaration())


def test_a_metric_must_compute_and_state_its_definition():
    from kdbench import Metric

    class Vague(Metric):
        """No definition."""

        name = "vague"
        higher_is_better = "yes"

    _refused("metrics", Vague, "must implement compute", "exact `definition`",
             "`higher_is_better` must be True, False or None")

    class Exact(Metric):
        """Voxel count of the prediction."""

        name = "count"
        definition = "|P| in voxels; 0 for an empty prediction"

        def compute(self, pred, ref, spacing):
            return float(pred.sum())

    assert Registry().metrics.add(Exact) is Exact


def test_a_strategy_with_the_old_loss_signature_is_refused_at_registration():
    class Old(Strategy):
        """training_loss(outputs, batch, context), the signature before TrainingStep."""

        name = "old"

        def training_loss(self, outputs, batch, context):
            return {}

    _refused("strategies", Old, "`training_loss` must take one TrainingStep",
             "got (self, outputs, batch, context)")
