"""The recognition pass alone (convert/patterns.py): small converter graphs built by hand.

Each test builds a `Model` node by node, runs one transformation or one phase, and checks which
nodes were recognised (and with which payload) and which stayed float, and why.
"""

from __future__ import annotations

import numpy as np
import pytest

from xnorinfer.convert import patterns
from xnorinfer.convert.attrs import (
    ActSignAttrs,
    AffineAttrs,
    BatchNormAttrs,
    BatchNormStage,
    BinaryConvAttrs,
    BinaryLayerAttrs,
    ChannelStage,
    ConvAttrs,
    LinearAttrs,
    PoolAttrs,
)
from xnorinfer.convert.graph import Model, Node

N, C, H, W = 2, 3, 4, 4
X = (N, C, H, W)


def model_of(nodes: list[Node], outputs: list[str], consts: dict[str, np.ndarray], shapes: dict) -> Model:
    all_shapes = {"x": X, **shapes, **{k: np.shape(v) for k, v in consts.items()}}
    return Model(inputs=["x"], outputs=outputs, nodes=nodes, consts=consts, shapes=all_shapes)


def ops(model: Model) -> list[str]:
    return [n.op for n in model.nodes]


# --------------------------------------------------------------------------- phase 1: activations


@pytest.mark.parametrize("cmp,zero", [("ge", "+1"), ("gt", "-1")])
def test_where_of_a_comparison_is_a_sign_with_per_channel_thresholds(cmp, zero):
    t = np.array([0.5, -1.0, 2.0]).reshape(1, C, 1, 1)
    model = model_of(
        [Node(cmp, ["x", "t"], "c"), Node("where", ["c", "one", "minus_one"], "s")],
        ["s"],
        {"t": t, "one": np.array(1.0), "minus_one": np.array(-1.0)},
        {"c": X, "s": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["act_sign"]
    (sign,) = model.nodes
    assert sign.inputs == ["x"] and sign.output == "s"
    assert isinstance(sign.attrs, ActSignAttrs) and sign.attrs.sign_zero == zero
    np.testing.assert_array_equal(sign.attrs.threshold, [[0.5, -1.0, 2.0]])


def test_where_with_other_values_is_not_a_sign():
    model = model_of(
        [Node("ge", ["x", "t"], "c"), Node("where", ["c", "one", "zero"], "s")],
        ["s"],
        {"t": np.array(0.0), "one": np.array(1.0), "zero": np.array(0.0)},
        {"c": X, "s": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["ge", "where"]  # a step to {0, 1} is not a ±1 sign


@pytest.mark.parametrize("cmp", ["gt", "ge"])
def test_brevitas_clamp_by_where_lets_the_sign_through(cmp):
    # Brevitas's binary quantizer: where(x > 1, 1, x), where(y < -1, -1, y), then its sign.
    lo = "le" if cmp == "ge" else "lt"
    model = model_of(
        [
            Node(cmp, ["x", "one"], "c1"),
            Node("where", ["c1", "one", "x"], "y"),
            Node(lo, ["y", "minus_one"], "c2"),
            Node("where", ["c2", "minus_one", "y"], "z"),
            Node("sign", ["z"], "s"),
        ],
        ["s"],
        {"one": np.array(1.0), "minus_one": np.array(-1.0)},
        {"c1": X, "y": X, "c2": X, "z": X, "s": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["act_sign"]  # the clamps do not change a sign at threshold 0 (and are dropped)
    assert model.nodes[0].inputs == ["x"]


def test_clamp_by_where_without_a_sign_is_a_hardtanh():
    big = float(np.finfo(np.float32).max)
    model = model_of(
        [
            Node("gt", ["x", "one"], "c1"),
            Node("where", ["c1", "one", "x"], "y"),
            Node("lt", ["y", "minus_one"], "c2"),
            Node("where", ["c2", "y", "minus_one"], "z"),  # keeps y where y < -1: min(y, -1)
        ],
        ["z"],
        {"one": np.array(1.0), "minus_one": np.array(-1.0)},
        {"c1": X, "y": X, "c2": X, "z": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["hardtanh", "hardtanh"]
    assert [(n.attrs.min_val, n.attrs.max_val) for n in model.nodes] == [(-big, 1.0), (-big, -1.0)]


def test_where_with_a_bound_that_is_not_the_compared_value_stays_where():
    # where(x > 1, 2, x) is not a clamp
    model = model_of(
        [Node("gt", ["x", "one"], "c"), Node("where", ["c", "two", "x"], "y")],
        ["y"],
        {"one": np.array(1.0), "two": np.array(2.0)},
        {"c": X, "y": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["gt", "where"]


@pytest.mark.parametrize(("first", "second", "zero"), [("ge", "lt", "+1"), ("gt", "le", "-1"), ("lt", "ge", "+1")])
def test_masked_assignments_with_complementary_masks_are_a_sign(first, second, zero):
    # out = x.clone(); out[x first 0] = v1; out[x second 0] = v2 (an in-place masked STE)
    v1, v2 = (1.0, -1.0) if first in ("ge", "gt") else (-1.0, 1.0)
    model = model_of(
        [
            Node(first, ["x", "zero"], "c1"),
            Node("where", ["c1", "v1", "x"], "y"),
            Node(second, ["x", "zero"], "c2"),
            Node("where", ["c2", "v2", "y"], "s"),
        ],
        ["s"],
        {"zero": np.array(0.0), "v1": np.array(v1), "v2": np.array(v2)},
        {"c1": X, "y": X, "c2": X, "s": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["act_sign"] and model.nodes[0].inputs == ["x"]
    assert model.nodes[0].attrs.sign_zero == zero


def test_masks_that_leave_elements_unassigned_are_not_a_sign():
    # x > 0 and x < 0 miss x == 0, where the clone's value shows through
    model = model_of(
        [
            Node("gt", ["x", "zero"], "c1"),
            Node("where", ["c1", "one", "x"], "y"),
            Node("lt", ["x", "zero"], "c2"),
            Node("where", ["c2", "minus_one", "y"], "s"),
        ],
        ["s"],
        {"zero": np.array(0.0), "one": np.array(1.0), "minus_one": np.array(-1.0)},
        {"c1": X, "y": X, "c2": X, "s": X},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert "act_sign" not in ops(model)


def test_shifted_sign_takes_the_shift_as_threshold():
    b = np.array([0.1, 0.2, 0.3]).reshape(1, C, 1, 1)
    model = model_of([Node("sub", ["x", "b"], "d"), Node("sign", ["d"], "s")], ["s"], {"b": b}, {"d": X, "s": X})
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    (sign,) = model.nodes
    assert sign.op == "act_sign" and sign.inputs == ["x"]
    assert sign.attrs.sign_zero == "0" and "learnable shift" in sign.attrs.ste  # torch.sign: sign(0) = 0
    np.testing.assert_array_equal(sign.attrs.threshold, [[0.1, 0.2, 0.3]])


def test_decoupled_signs_become_one_sign_with_two_thresholds():
    model = model_of(
        [
            Node("sub", ["x", "t1"], "d1"),
            Node("sign", ["d1"], "s1"),
            Node("sub", ["x", "t2"], "d2"),
            Node("sign", ["d2"], "s2"),
            Node("concat", ["s1", "s2"], "cat"),
        ],
        ["cat"],
        {"t1": np.array(0.5), "t2": np.array(-0.5)},
        {"d1": X, "s1": X, "d2": X, "s2": X, "cat": (N, 2 * C, H, W)},
    )
    model = patterns.run_to_fixed_point(model, patterns.ACTIVATIONS)
    assert ops(model) == ["act_sign"]
    np.testing.assert_array_equal(model.nodes[0].attrs.threshold, [[0.5] * C, [-0.5] * C])


# --------------------------------------------------------------------------- phase 2: binary layers


def sign_then_conv(weight: np.ndarray, *, with_bias: bool = False) -> Model:
    o = weight.shape[0]
    consts = {"w": weight}
    inputs = ["s", "w"]
    if with_bias:
        consts["b"] = np.arange(o, dtype=np.float64)
        inputs.append("b")
    return model_of(
        [
            Node("act_sign", ["x"], "s", ActSignAttrs(np.zeros((1, C)), "+1", "test")),
            Node("conv2d", inputs, "y", ConvAttrs((1, 1), (1, 1), weight_param="conv.weight"), "conv"),
        ],
        ["y"],
        consts,
        {"s": X, "y": (N, o, H, W)},
    )


def test_conv_with_alpha_weights_on_a_sign_becomes_a_binary_conv():
    rng = np.random.default_rng(0)
    alpha = np.array([0.5, 2.0])
    signs = np.where(rng.random((2, C, 3, 3)) < 0.5, -1.0, 1.0)
    model = sign_then_conv(alpha[:, None, None, None] * signs, with_bias=True)
    model, changed = patterns.BinaryWeights().apply(model)
    assert changed and ops(model) == ["act_sign", "bconv2d"]
    conv = model.nodes[1]
    assert conv.inputs == ["s"] and conv.output == "y" and conv.path == "conv"
    a = conv.attrs
    assert isinstance(a, BinaryConvAttrs) and a.sign is None
    assert (a.stride, a.padding) == ((1, 1), (1, 1))
    np.testing.assert_array_equal(a.alpha, alpha)
    np.testing.assert_array_equal(a.weight_sign, signs.astype(np.int8))
    assert len(a.chain) == 1 and isinstance(a.chain[0], ChannelStage) and a.chain[0].kind == "add"
    np.testing.assert_array_equal(a.chain[0].v, [0.0, 1.0])  # the conv bias is the first stage
    assert model.metadata["float_layers"] == {}


def test_conv_on_a_float_input_stays_float_and_says_why():
    w = np.ones((2, C, 3, 3))
    model = model_of(
        [Node("conv2d", ["x", "w"], "y", ConvAttrs((1, 1), (1, 1)), "stem")], ["y"], {"w": w}, {"y": (N, 2, H, W)}
    )
    model, changed = patterns.BinaryWeights().apply(model)
    assert not changed and ops(model) == ["conv2d"]
    assert model.metadata["float_layers"] == {"stem": "input is not a binarized (sign) activation"}
    assert "binary_warnings" not in model.metadata  # the graph input (an image) is float by design


def test_non_binary_weights_stay_float_unless_declared_binary():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, C, 3, 3))
    model, changed = patterns.BinaryWeights().apply(sign_then_conv(w))
    assert not changed and ops(model) == ["act_sign", "conv2d"]
    assert model.metadata["float_layers"]["conv"].startswith("weight is not binary-valued")

    model, changed = patterns.BinaryWeights(binarize=["co*"]).apply(sign_then_conv(w))
    assert changed and ops(model) == ["act_sign", "bconv2d"]
    np.testing.assert_allclose(model.nodes[1].attrs.alpha, np.abs(w).reshape(2, -1).mean(axis=1))
    declared = model.metadata["binarized"]["conv"]
    assert declared["param"] == "conv.weight" and declared["zero_weights"] == 0
    q = np.abs(w).reshape(2, -1).mean(axis=1)[:, None, None, None] * np.where(w < 0, -1, 1)
    assert declared["relative_error"] == pytest.approx(np.linalg.norm(q - w) / np.linalg.norm(w))


def test_batchnorm_after_a_binary_linear_joins_its_chain():
    g, b, m, v = (np.array([1.5, -0.5]), np.array([0.1, 0.2]), np.array([0.3, 0.4]), np.array([2.0, 3.0]))
    layer = BinaryLayerAttrs(weight_sign=np.ones((2, 4), np.int8), alpha=np.ones(2))
    model = Model(
        inputs=["x"],
        outputs=["z"],
        nodes=[
            Node("act_sign", ["x"], "s", ActSignAttrs(np.zeros((1, 4)), "+1", "test")),
            Node("blinear", ["s"], "y", layer),
            Node("batch_norm", ["y", "g", "b", "m", "v"], "z", BatchNormAttrs(1e-5)),
        ],
        consts={"g": g, "b": b, "m": m, "v": v},
        shapes={"x": (1, 4), "s": (1, 4), "y": (1, 2), "z": (1, 2), "g": (2,), "b": (2,), "m": (2,), "v": (2,)},
    )
    model, changed = patterns.FoldIntoBinary().apply(model)
    assert changed and ops(model) == ["act_sign", "blinear"]
    blinear = model.nodes[1]
    assert blinear.output == "z" and model.outputs == ["z"]
    (stage,) = blinear.attrs.chain
    assert isinstance(stage, BatchNormStage) and stage.eps == 1e-5
    for got, want in zip((stage.gamma, stage.beta, stage.mean, stage.var), (g, b, m, v), strict=True):
        np.testing.assert_array_equal(got, want)


def test_maxpool_of_a_sign_is_a_bit_maxpool_and_of_floats_is_not():
    pool = PoolAttrs((2, 2), (2, 2), (0, 0))
    half = (N, C, H // 2, W // 2)
    model = model_of(
        [
            Node("act_sign", ["x"], "s", ActSignAttrs(np.zeros((1, C)), "+1", "test")),
            Node("maxpool2d", ["s"], "p", pool),
            Node("maxpool2d", ["x"], "q", pool),
        ],
        ["p", "q"],
        {},
        {"s": X, "p": half, "q": half},
    )
    model, _ = patterns.MaxPoolOnBits().apply(model)
    assert ops(model) == ["act_sign", "bmaxpool2d", "maxpool2d"]


def test_linear_on_floats_is_left_for_lowering():
    model = Model(
        inputs=["x"],
        outputs=["y"],
        nodes=[Node("linear", ["x", "w"], "y", LinearAttrs())],
        consts={"w": np.arange(1.0, 9.0).reshape(2, 4)},  # (±1 weights on floats: a binary-weight layer, test_bwn.py)
        shapes={"x": (1, 4), "y": (1, 2), "w": (2, 4)},
    )
    model = patterns.recognise(model)
    assert ops(model) == ["linear"]


# --------------------------------------------------------------------------- phase 3: float ops


def test_batchnorm_on_floats_becomes_an_affine():
    g, b, m, v = np.array([2.0, -1.0, 0.5]), np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.0, -1.0]), np.ones(3) * 4
    model = model_of(
        [Node("batch_norm", ["x", "g", "b", "m", "v"], "y", BatchNormAttrs(0.0))],
        ["y"],
        {"g": g, "b": b, "m": m, "v": v},
        {"y": X},
    )
    model, changed = patterns.ElementwiseToAffine().apply(model)
    assert changed and ops(model) == ["affine"]
    a = model.nodes[0].attrs
    assert isinstance(a, AffineAttrs)
    np.testing.assert_allclose(a.scale, g / 2.0)  # gamma / sqrt(var + eps), sqrt(4) = 2
    np.testing.assert_allclose(a.shift, b - m * g / 2.0)


def test_rprelu_takes_both_shifts():
    model = model_of(
        [
            Node("sub", ["x", "b1"], "d"),
            Node("gt", ["d", "zero"], "c"),
            Node("mul", ["slope", "d"], "m"),
            Node("where", ["c", "d", "m"], "p"),
            Node("add", ["p", "b2"], "y"),
        ],
        ["y"],
        {
            "b1": np.array([0.1, 0.2, 0.3]).reshape(C, 1, 1),
            "zero": np.array(0.0),
            "slope": np.array([0.25, 0.5, 0.75]).reshape(C, 1, 1),
            "b2": np.array([1.0, 2.0, 3.0]).reshape(C, 1, 1),
        },
        {"d": X, "c": X, "m": X, "p": X, "y": X},
    )
    model = patterns.recognise(model)
    assert ops(model) == ["prelu"]
    (prelu,) = model.nodes
    assert prelu.inputs == ["x"] and prelu.output == "y"
    np.testing.assert_array_equal(prelu.attrs.slope, [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(prelu.attrs.pre_shift, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(prelu.attrs.post_shift, [1.0, 2.0, 3.0])
