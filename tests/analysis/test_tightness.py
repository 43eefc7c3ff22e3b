import numpy as np
import pytest

from nobound.analysis.tightness import tightness
from nobound.autodiff.tensor import Tensor
from nobound.nn import build_model, kaiming_uniform


@pytest.fixture
def model_and_data():
    model = kaiming_uniform(build_model("cnn3_tiny", (1, 12, 12), 4, dtype=np.float64), seed=1)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (24, 1, 12, 12))
    predicted = model(Tensor(images)).data.argmax(axis=-1)
    labels = np.where(np.arange(24) % 3 == 0, (predicted + 1) % 4, predicted)
    return model, images, labels, float((predicted == labels).mean())


def test_zero_radius_certifies_exactly_the_correct_inputs(model_and_data):
    model, images, labels, natural = model_and_data
    curves = tightness(model, images, labels, ["ibp", "deeppoly"], max_eps=0.05, points=3)
    for curve in curves:
        assert curve.certified_accuracy[0] == pytest.approx(natural)
        assert all(a >= b for a, b in zip(curve.certified_accuracy,
                                           curve.certified_accuracy[1:], strict=False))
        assert 0.0 <= curve.auc <= natural + 1e-12


def test_hbox_certifies_at_least_what_ibp_certifies(model_and_data):
    # HBox ⊆ IBP is a theorem, so its certified accuracy is never lower at any radius
    model, images, labels, _ = model_and_data
    ibp, hbox = tightness(model, images, labels, ["ibp", "hbox"], max_eps=0.1, points=6)
    assert all(h >= i for h, i in zip(hbox.certified_accuracy, ibp.certified_accuracy,
                                      strict=True))
    assert hbox.auc >= ibp.auc
    assert hbox.mean_margin_width <= ibp.mean_margin_width + 1e-9


def test_rejects_bad_radius(model_and_data):
    model, images, labels, _ = model_and_data
    with pytest.raises(ValueError):
        tightness(model, images, labels, ["ibp"], max_eps=0.0)
