"""The lowering pass alone (convert/lower.py): hand-built recognised graphs -> the expected IR.

The expected packed words, layouts and permutations are computed here bit by bit from the
definitions (docs/ir.md: bit 1 = -1, channel c in word c // 64 at bit c % 64; NHWC; flatten in
(H, W, C) order), not with the converter's own packing helpers.
"""

from __future__ import annotations

import numpy as np
import pytest

from xnorinfer.convert.attrs import (
    ActSignAttrs,
    BinaryConvAttrs,
    BinaryLayerAttrs,
    ChannelStage,
    ConvAttrs,
    LinearAttrs,
    NoAttrs,
    PReLUAttrs,
    SignFold,
)
from xnorinfer.convert.graph import ConversionError, Model, Node
from xnorinfer.convert.lower import lower


def model_of(nodes: list[Node], outputs: list[str], consts: dict, shapes: dict) -> Model:
    shapes = {**shapes, **{k: np.shape(v) for k, v in consts.items()}}
    return Model(inputs=["x"], outputs=outputs, nodes=nodes, consts=consts, shapes=shapes, metadata={"fx_paths": {}})


def packed_words(negative_rows: np.ndarray) -> np.ndarray:
    """uint64 words of a boolean (..., F) array, bit f % 64 of word f // 64 set where True."""
    flat = negative_rows.reshape(-1, negative_rows.shape[-1])
    n_words = (flat.shape[1] + 63) // 64
    out = np.zeros((flat.shape[0], n_words), np.uint64)
    for r, row in enumerate(flat):
        for f in np.flatnonzero(row):
            out[r, f // 64] |= np.uint64(1) << np.uint64(f % 64)
    return out.reshape(negative_rows.shape[:-1] + (n_words,))


def test_sign_binary_conv_flatten_binary_linear():
    rng = np.random.default_rng(3)
    c, h, w, o, classes = 3, 4, 4, 2, 3
    conv_sign = np.where(rng.random((o, c, 3, 3)) < 0.5, -1, 1).astype(np.int8)
    fc_sign = np.where(rng.random((classes, o * h * w)) < 0.5, -1, 1).astype(np.int8)
    fold = SignFold(np.array([1, -2], np.int32), np.array([0, 1], np.uint8), "+1", "ste", k=27)
    alpha, bias = np.array([0.5, 1.0, 2.0]), np.array([0.25, -0.5, 1.0])
    model = model_of(
        [
            Node("act_sign", ["x"], "s", ActSignAttrs(np.array([[0.1, 0.2, 0.3]]), "+1", "ste"), "act", "fx_s"),
            Node(
                "bconv2d",
                ["s"],
                "b",
                BinaryConvAttrs(weight_sign=conv_sign, alpha=np.ones(o), stride=(1, 1), padding=(1, 1), sign=fold),
                "conv",
                "fx_b",
            ),
            Node("reshape", ["b"], "f"),
            Node(
                "blinear",
                ["f"],
                "y",
                BinaryLayerAttrs(weight_sign=fc_sign, alpha=alpha, chain=(ChannelStage("add", bias),)),
                "fc",
            ),
        ],
        ["y"],
        {},
        {"x": (2, c, h, w), "s": (2, c, h, w), "b": (2, o, h, w), "f": (2, o * h * w), "y": (2, classes)},
    )
    graph = lower(model)
    assert [op.kind for op in graph.ops] == ["sign", "bconv2d", "bflatten", "blinear"]
    sign, conv, flat, fc = graph.ops
    t = graph.tensors
    assert (t["input"].shape, t["input"].dtype) == ((1, h, w, c), "f32")  # NHWC, batch 1
    assert [(t[op.outputs[0]].shape, t[op.outputs[0]].dtype) for op in graph.ops] == [
        ((1, h, w, c), "bits"),
        ((1, h, w, o), "bits"),
        ((1, o * h * w), "bits"),
        ((1, classes), "f32"),
    ]
    assert sign.attrs == {"sign_zero": "+1"}
    np.testing.assert_array_equal(sign.params["threshold"], np.float32([0.1, 0.2, 0.3]))

    assert conv.name == "conv" and conv.inputs == sign.outputs
    assert conv.attrs == {"stride": [1, 1], "padding": [1, 1], "pad_mode": "zero", "in_channels": c, "output": "bits"}
    want = packed_words(np.transpose(conv_sign, (0, 2, 3, 1)) < 0)  # OHWI, packed along input channels
    assert conv.params["weight"].dtype == np.uint64 and conv.params["weight"].shape == (o, 3, 3, 1)
    np.testing.assert_array_equal(conv.params["weight"], want)
    np.testing.assert_array_equal(conv.params["threshold"], [1, -2])
    np.testing.assert_array_equal(conv.params["flip"], [0, 1])

    # IR feature (hh, ww, cc) is PyTorch feature cc * h * w + hh * w + ww
    perm = [cc * h * w + hh * w + ww for hh in range(h) for ww in range(w) for cc in range(o)]
    assert fc.inputs == flat.outputs
    assert fc.attrs == {"in_features": o * h * w, "output": "float"}
    np.testing.assert_array_equal(fc.params["weight"], packed_words(fc_sign[:, perm] < 0))
    np.testing.assert_array_equal(fc.params["multiplier"], np.float32(alpha))  # alpha * s + bias
    np.testing.assert_array_equal(fc.params["bias"], np.float32(bias))

    assert graph.inputs == ["input"] and graph.outputs == fc.outputs
    assert graph.metadata["binary_outputs"] == {
        sign.outputs[0]: {"fx": "fx_s", "path": "act", "module": ""},
        conv.outputs[0]: {"fx": "fx_b", "path": "conv", "module": ""},
    }


def test_a_sign_output_is_unpacked_for_the_caller():
    model = model_of(
        [Node("act_sign", ["x"], "s", ActSignAttrs(np.zeros((1, 2)), "-1", "ste"))],
        ["s"],
        {},
        {"x": (1, 2, 3, 3), "s": (1, 2, 3, 3)},
    )
    graph = lower(model)
    assert [op.kind for op in graph.ops] == ["sign", "unpack"]
    assert graph.ops[0].attrs == {"sign_zero": "-1"}
    assert graph.outputs == graph.ops[1].outputs and graph.tensors[graph.outputs[0]].dtype == "f32"


def test_float_conv_weight_becomes_ohwi():
    w = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    model = model_of(
        [Node("conv2d", ["x", "w", "b"], "y", ConvAttrs((2, 2), (0, 0)))],
        ["y"],
        {"w": w, "b": np.array([1.0, 2.0])},
        {"x": (1, 3, 4, 4), "y": (1, 2, 2, 2)},
    )
    (op,) = lower(model).ops
    assert op.kind == "conv2d" and op.attrs == {"stride": [2, 2], "padding": [0, 0]}
    for oo in range(2):
        for kh in range(2):
            for kw in range(2):
                for ci in range(3):
                    assert op.params["weight"][oo, kh, kw, ci] == w[oo, ci, kh, kw]
    assert op.params["weight"].dtype == np.float32
    np.testing.assert_array_equal(op.params["bias"], np.float32([1.0, 2.0]))


def test_features_input_is_flattened_from_nchw():
    model = model_of(
        [Node("linear", ["x", "w"], "y", LinearAttrs())],
        ["y"],
        {"w": np.ones((2, 5))},
        {"x": (4, 5), "y": (4, 2)},
    )
    graph = lower(model)
    assert [op.kind for op in graph.ops] == ["flatten", "linear"]
    assert graph.tensors["input"].shape == (1, 1, 1, 5)  # the engine takes (N, F) as NCHW (N, F, 1, 1)


def test_prelu_with_one_shift_gets_the_other_as_zeros():
    model = model_of(
        [Node("prelu", ["x"], "y", PReLUAttrs(np.array([0.1, 0.2]), pre_shift=np.array([1.0, 2.0])))],
        ["y"],
        {},
        {"x": (1, 2, 3, 3), "y": (1, 2, 3, 3)},
    )
    (op,) = lower(model).ops
    np.testing.assert_array_equal(op.params["pre_shift"], np.float32([1.0, 2.0]))
    np.testing.assert_array_equal(op.params["post_shift"], np.zeros(2, np.float32))


def test_unrecognised_op_names_the_place_and_the_nearest_pattern():
    node = Node("pad", ["x"], "y", NoAttrs())
    node.where = "module 'head' (model.py:12)"
    model = model_of([node], ["y"], {}, {"x": (1, 2), "y": (1, 2)})
    with pytest.raises(ConversionError, match=r"unsupported op 'pad' in module 'head' \(model.py:12\).*F.pad"):
        lower(model)


def test_binary_layer_on_floats_is_refused():
    layer = BinaryLayerAttrs(weight_sign=np.ones((2, 4), np.int8), alpha=np.ones(2))
    model = model_of([Node("blinear", ["x"], "y", layer, "fc")], ["y"], {}, {"x": (1, 4), "y": (1, 2)})
    with pytest.raises(ConversionError, match="blinear at fc needs a binarized input"):
        lower(model)


def test_add_of_mismatched_shapes_is_refused():
    model = model_of(
        [
            Node("global_avgpool", ["x"], "g"),
            Node("add", ["x", "g"], "y"),
        ],
        ["y"],
        {},
        {"x": (1, 2, 3, 3), "g": (1, 2), "y": (1, 2, 3, 3)},
    )
    with pytest.raises(ConversionError, match="unsupported op 'add'"):
        lower(model)
