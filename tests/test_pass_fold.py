"""The folding pass alone (patterns.SignIntoBinary -> fold.thresholds) on a hand-built graph.

A blinear with a bias and a BatchNorm in its chain, followed by a sign with threshold t, becomes a
blinear with integer thresholds. The expected threshold is solved by hand in float64: with
z(s) = (alpha * s + bias - mean) / sqrt(var + eps) * gamma + beta, the output is -1 where z(s) < t,
i.e. s < x* (gamma > 0) or s > x* (gamma < 0) for x* = ((t - beta) * sqrt(var + eps) / gamma + mean - bias) / alpha.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from xnorinfer.convert import patterns
from xnorinfer.convert.attrs import ActSignAttrs, BatchNormStage, BinaryLayerAttrs, ChannelStage, SignFold
from xnorinfer.convert.fold import INT32_MIN
from xnorinfer.convert.graph import Model, Node

K = 64  # inputs of the binary linear: the integer sum s lies in [-K, K]


def linear_bn_sign(alpha, bias, gamma, beta, mean, var, eps, t, sign_zero="+1") -> Model:
    c = len(alpha)
    layer = BinaryLayerAttrs(
        weight_sign=np.ones((c, K), np.int8),
        alpha=np.asarray(alpha, np.float64),
        chain=(
            ChannelStage("add", np.asarray(bias, np.float64)),
            BatchNormStage(*(np.asarray(p, np.float64) for p in (gamma, beta, mean, var)), eps),
        ),
    )
    return Model(
        inputs=["x"],
        outputs=["out"],
        nodes=[
            Node("act_sign", ["x"], "s", ActSignAttrs(np.zeros((1, K)), "+1", "input sign")),
            Node("blinear", ["s"], "y", layer, "fc"),
            Node("act_sign", ["y"], "out", ActSignAttrs(np.asarray(t, np.float64).reshape(1, c), sign_zero, "ste")),
        ],
        consts={},
        shapes={"x": (1, K), "s": (1, K), "y": (1, c), "out": (1, c)},
    )


def folded(model: Model) -> SignFold:
    model, changed = patterns.SignIntoBinary().apply(model)
    model.remove_dead()
    assert changed and [n.op for n in model.nodes] == ["act_sign", "blinear"]
    layer = model.nodes[1]
    assert layer.output == "out" and model.outputs == ["out"]  # the sign was absorbed
    assert isinstance(layer.attrs, BinaryLayerAttrs) and layer.attrs.sign is not None
    return layer.attrs.sign


def by_hand(alpha, bias, gamma, beta, mean, var, eps, t) -> tuple[list[int], list[int]]:
    """(threshold, flip) per channel from the solved inequality, plain Python floats."""
    thr, flip = [], []
    for a, b, g, be, m, v, tt in zip(alpha, bias, gamma, beta, mean, var, t, strict=True):
        x = ((tt - be) * math.sqrt(v + eps) / g + m - b) / a
        if g > 0:  # -1 for s < x*: s < ceil(x*)
            thr.append(math.ceil(x))
            flip.append(0)
        else:  # -1 for s > x*: s >= floor(x*) + 1, the IR's (s < thr) XOR 1
            thr.append(math.floor(x) + 1)
            flip.append(1)
    return thr, flip


def test_thresholds_equal_the_solved_inequality():
    rng = np.random.default_rng(7)
    c = 16
    alpha = rng.uniform(0.05, 1.0, c)
    bias, beta, mean = rng.normal(size=c), rng.normal(size=c), rng.normal(size=c)
    var, t = rng.uniform(0.2, 4.0, c), rng.normal(scale=0.3, size=c)
    gamma = rng.uniform(0.3, 2.0, c) * np.where(np.arange(c) % 3 == 0, -1, 1)  # some negative gammas
    eps = 1e-5
    thr, flip = by_hand(alpha, bias, gamma, beta, mean, var, eps, t)
    assert all(-K < x < K for x in thr), "parameters chosen so that no channel is constant"
    sign = folded(linear_bn_sign(alpha, bias, gamma, beta, mean, var, eps, t))
    assert sign.threshold.dtype == np.int32 and sign.flip.dtype == np.uint8
    assert sign.threshold.tolist() == thr
    assert sign.flip.tolist() == flip
    assert sign.k == K and sign.sign_zero == "+1" and sign.ste == "ste"
    assert sign.constant == [] and sign.ties == []


@pytest.mark.parametrize("sign_zero,threshold", [("+1", 3), ("-1", 4)])
def test_a_tie_follows_the_sign_zero_convention(sign_zero, threshold):
    # z(s) = 0.5 * s - 1.5 is exactly 0 at s = 3 (all values exact in binary floating point)
    sign = folded(linear_bn_sign([0.5], [0.0], [1.0], [0.0], [1.5], [1.0], 0.0, [0.0], sign_zero))
    assert sign.ties == [(0, 3)]
    assert sign.threshold.tolist() == [threshold] and sign.flip.tolist() == [0]  # "-1": s = 3 gives -1 too


def test_zero_gamma_gives_constant_channels():
    # gamma = 0: z = beta for every s; beta > t is always +1 (bit 0), beta < t always -1 (bit 1)
    sign = folded(
        linear_bn_sign([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.5, -0.5], [0.0, 0.0], [1.0, 1.0], 0.0, [0.0, 0.0])
    )
    assert sign.constant == [0, 1]
    assert sign.threshold.tolist() == [INT32_MIN, INT32_MIN]
    assert sign.flip.tolist() == [0, 1]


def test_a_sign_with_two_thresholds_is_not_folded():
    model = linear_bn_sign([1.0], [0.0], [1.0], [0.0], [0.0], [1.0], 0.0, [0.0])
    model.nodes[2].attrs = ActSignAttrs(np.zeros((2, 1)), "+1", "decoupled")
    model, changed = patterns.SignIntoBinary().apply(model)
    assert not changed and model.nodes[1].attrs.sign is None
