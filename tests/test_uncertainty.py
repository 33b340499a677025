"""Uncertainty scores against values computed by hand (natural log)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from balpm.engine.uncertainty import (
    aleatoric_entropy,
    bald,
    binary_entropy,
    predictive_entropy,
    score,
    variance,
)
from balpm.errors import ConfigError, FeatureError

LN2 = math.log(2.0)
H01 = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9))   # 0.325083
H02 = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))   # 0.500402
H03 = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))   # 0.610864


def test_binary_entropy_hand_values_and_endpoints():
    out = binary_entropy(np.array([0.0, 0.5, 1.0, 0.1, 0.9]))
    np.testing.assert_allclose(out, [0.0, LN2, 0.0, H01, H01], rtol=1e-12, atol=0)
    assert H01 == pytest.approx(0.325083, abs=1e-6) and H02 == pytest.approx(0.500402, abs=1e-6)


def test_hand_computed_rows():
    probs = np.array([
        [0.5, 0.5],        # agreement at maximum noise: all aleatoric
        [0.0, 1.0],        # total disagreement of confident members: all epistemic
        [0.1, 0.3],        # p_bar = 0.2
    ])
    np.testing.assert_allclose(predictive_entropy(probs), [LN2, LN2, H02], rtol=1e-12)
    np.testing.assert_allclose(aleatoric_entropy(probs), [LN2, 0.0, (H01 + H03) / 2], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(bald(probs), [0.0, LN2, H02 - (H01 + H03) / 2], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(variance(probs), [0.0, 0.25, 0.01], rtol=1e-12, atol=1e-15)
    assert bald(probs)[2] == pytest.approx(0.0324287, abs=1e-6)
    agree = np.array([[0.9, 0.9, 0.9]])
    assert bald(agree)[0] == pytest.approx(0.0, abs=1e-15)
    assert predictive_entropy(agree)[0] == pytest.approx(H01, rel=1e-12)


def test_outputs_are_float64_finite_and_symmetric():
    rng = np.random.default_rng(0)
    probs = rng.random((200, 5)).astype(np.float32)
    probs[:10] = 0.0
    probs[10:20] = 1.0
    for fn in (bald, predictive_entropy, aleatoric_entropy, variance):
        out = fn(probs)
        assert out.dtype == np.float64 and out.shape == (200,) and np.isfinite(out).all()
    # swapping the answers (p -> 1 - p) does not change any score: the label cannot leak
    np.testing.assert_allclose(bald(probs), bald(1.0 - probs.astype(np.float64)), atol=1e-12)
    # mutual information is non-negative (Jensen) and bounded by the predictive entropy
    assert (bald(probs) > -1e-12).all() and (bald(probs) <= predictive_entropy(probs) + 1e-12).all()


def test_score_dispatch_and_none():
    probs = np.array([[0.1, 0.3], [0.5, 0.5]])
    np.testing.assert_array_equal(score(probs, "epistemic"), bald(probs))
    np.testing.assert_array_equal(score(probs, "predictive"), predictive_entropy(probs))
    np.testing.assert_array_equal(score(probs, "aleatoric"), aleatoric_entropy(probs))
    np.testing.assert_array_equal(score(probs, "variance"), variance(probs))
    zeros = score(probs, "none")
    assert zeros.dtype == np.float64 and (zeros == 0).all() and zeros.shape == (2,)
    with pytest.raises(ConfigError, match="unknown uncertainty"):
        score(probs, "entropy")


@pytest.mark.parametrize("bad, match", [
    (np.array([[0.2, np.nan]]), "NaN"),
    (np.array([[0.2, np.inf]]), "NaN or inf"),
    (np.array([[0.2, 1.5]]), r"\[0, 1\]"),
    (np.array([0.2, 0.4]), "2-D"),
])
def test_bad_probabilities_raise_one_line(bad, match):
    with pytest.raises(FeatureError, match=match) as info:
        bald(bad)
    assert "\n" not in str(info.value)
