"""Per-image graphs (metadata per_image): one image at a time at the recorded input size.

A graph whose axis 0 is not the batch everywhere (attention folding heads into axis 0) is run by
the session image by image; its outputs must equal running each image alone, and an input of
another spatial size is refused with a message that names the recorded one.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime import Builder, reference_run

import xnorinfer
from xnorinfer import xbin


def _model(tmp_path, rng, per_image: bool):
    b = Builder(rng, (1, 3, 6, 5))
    t = b.sign(b.int_conv("x", 8))
    t = b.add("flatten", [b.bconv(t, 8, output="float")])
    b.g.outputs = [b.add("softmax", [b.linear(t, 4)]), t]
    if per_image:
        b.g.metadata["per_image"] = True
    path = tmp_path / ("p.xbin" if per_image else "b.xbin")
    xbin.write(b.g, path)
    return b.g, path


def test_per_image_graph_runs_each_image_as_alone(tmp_path, rng):
    g, path = _model(tmp_path, rng, per_image=True)
    x = rng.integers(-3, 4, size=(3, 3, 6, 5)).astype(np.float32)
    for threads in (1, 2):
        s = xnorinfer.load(path, threads=threads)
        probs, features = s.run(x)
        assert probs.shape == (3, 4)
        for i in range(3):
            ref = reference_run(g, x[i : i + 1])[g.outputs[0]]
            np.testing.assert_allclose(probs[i : i + 1], ref, rtol=1e-5, atol=1e-6)
            alone_probs, alone_features = s.run(x[i : i + 1])
            np.testing.assert_array_equal(probs[i : i + 1], alone_probs)
            np.testing.assert_array_equal(features[i : i + 1], alone_features)


def test_per_image_graph_equals_the_batched_graph(tmp_path, rng):
    seed = int(rng.integers(1 << 30))
    _, per_image = _model(tmp_path, np.random.default_rng(seed), per_image=True)
    _, batched = _model(tmp_path, np.random.default_rng(seed), per_image=False)
    x = np.random.default_rng(1).integers(-3, 4, size=(4, 3, 6, 5)).astype(np.float32)
    for a, b in zip(xnorinfer.load(per_image).run(x), xnorinfer.load(batched).run(x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_per_image_graph_refuses_another_input_size(tmp_path, rng):
    _, path = _model(tmp_path, rng, per_image=True)
    s = xnorinfer.load(path)
    with pytest.raises(ValueError, match=r"recorded input size only.*\(N, 3, 6, 5\)"):
        s.run(np.zeros((1, 3, 8, 5), np.float32))


def test_per_image_flag_must_be_a_boolean(tmp_path, rng):
    g, _ = _model(tmp_path, rng, per_image=False)
    g.metadata["per_image"] = 1
    path = tmp_path / "bad.xbin"
    xbin.write(g, path)
    with pytest.raises(ValueError, match="per_image must be true or false"):
        xnorinfer.load(path)


def test_reference_runs_a_per_image_graph_one_image_at_a_time(tmp_path, rng):
    """A reshape that folds the whole image into axis 0 only holds at batch 1: the reference (like the
    runtime) must run such a graph image by image."""
    from xnorinfer import ir
    from xnorinfer.convert import reference

    g = ir.Graph(
        inputs=["x"],
        outputs=["y"],
        tensors={
            "x": ir.Tensor("x", (1, 2, 2, 3), "f32"),
            "r": ir.Tensor("r", (4, 3), "f32"),
            "m": ir.Tensor("m", (1, 3), "f32"),
            "y": ir.Tensor("y", (1, 3), "f32"),
        },
        ops=[
            ir.Op("reshape", "r", ["x"], ["r"], {"shape": [4, 3]}),
            ir.Op("reduce", "m", ["r"], ["m"], {"op": "max", "axes": [0], "keepdims": True}),
            ir.Op("reshape", "y", ["m"], ["y"], {"shape": [1, 3]}),
        ],
        metadata={"input_shape": [1, 3, 2, 2], "per_image": True},
    )
    x = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
    want = x.reshape(3, 3, 4).max(axis=2)  # per image: the max over its pixels, per channel
    np.testing.assert_array_equal(reference.run(g, x)["y"], want)
    path = tmp_path / "g.xbin"
    xbin.write(g, path)
    np.testing.assert_array_equal(xnorinfer.load(path).run(x), want)
