"""nobound's IBP, CROWN-IBP and CROWN (= DeepPoly) equal auto_LiRPA's numbers.

``shared/reference/autolirpa_bounds.npz`` holds bounds computed by auto_LiRPA in float64
for three small ReLU networks (see its README): logit bounds and margin lower bounds with
the specification folded into the last layer. An independent implementation agreeing to
1e-9 on every number is strong evidence that the relaxations are the paper's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from nobound.autodiff.tensor import no_grad
from nobound.backend import device_of, to_numpy
from nobound.bounds import compute_bounds, linf_ball, margin_spec
from nobound.nn import Conv2d, Flatten, Linear, ReLU, Sequential

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference",
                         "autolirpa_bounds.npz")
TOLERANCE = 1e-9
METHODS = {"IBP": "ibp", "CROWN-IBP": "crown-ibp", "CROWN": "crown"}


def _network(name: str) -> Sequential:
    """The reference networks, with PyTorch's layer indices (so the weight names match)."""
    f64 = np.float64
    if name == "fc":
        return Sequential(Flatten(), Linear(784, 64, dtype=f64), ReLU(),
                          Linear(64, 64, dtype=f64), ReLU(), Linear(64, 10, dtype=f64))
    if name == "small_conv":
        return Sequential(Conv2d(1, 4, 3, 2, 1, dtype=f64), ReLU(),
                          Conv2d(4, 4, 3, 1, 1, dtype=f64), ReLU(), Flatten(),
                          Linear(784, 16, dtype=f64), ReLU(), Linear(16, 10, dtype=f64))
    return Sequential(Conv2d(1, 8, 5, 2, 2, dtype=f64), ReLU(), Conv2d(8, 8, 4, 2, 1, dtype=f64),
                      ReLU(), Flatten(), Linear(392, 10, dtype=f64))


@pytest.fixture(scope="module")
def reference():
    if not os.path.exists(REFERENCE):
        pytest.skip("shared/reference/autolirpa_bounds.npz is not available")
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


def _loaded(reference: dict, name: str, xp):
    model = _network(name)
    prefix = f"{name}/"
    model.load_state_dict({key[len(prefix):]: value for key, value in reference.items()
                           if key.startswith(prefix) and key.endswith(("weight", "bias"))})
    if xp is not np:
        model.to(device_of(xp))
    return model


@pytest.mark.parametrize("name", ["fc", "small_conv", "cnn3"])
def test_network_outputs_match(reference, name, xp):
    model = _loaded(reference, name, xp)
    logits = model(xp.asarray(reference[f"{name}/x"]))
    np.testing.assert_allclose(to_numpy(logits.data), reference[f"{name}/logits"],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", ["0.02", "0.1"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", ["fc", "small_conv", "cnn3"])
def test_bounds_match_auto_lirpa(reference, name, method, eps, xp):
    model = _loaded(reference, name, xp)
    region = linf_ball(xp.asarray(reference[f"{name}/x"]), float(eps))
    key = f"{name}/eps{eps}/{method}/"

    with no_grad():
        logits = compute_bounds(model, region, method=METHODS[method])
    np.testing.assert_allclose(to_numpy(logits.lower.data), reference[key + "logit_lower"],
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(to_numpy(logits.upper.data), reference[key + "logit_upper"],
                               rtol=0, atol=TOLERANCE)

    spec = margin_spec(xp.asarray(reference[f"{name}/ref_class"]), 10, dtype=np.float64)
    with no_grad():
        margins = compute_bounds(model, region, method=METHODS[method], spec=spec)
    np.testing.assert_allclose(to_numpy(margins.lower.data), reference[key + "margin_lower"],
                               rtol=0, atol=TOLERANCE)
