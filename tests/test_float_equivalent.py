"""The float PyTorch equivalent of a graph computes the same function as the engine."""

from __future__ import annotations

import numpy as np
import torch
from test_runtime import Builder

import xnorinfer
from xnorinfer import xbin
from xnorinfer.float_equivalent import torch_module


def _compare(tmp_path, g, x):
    path = tmp_path / "m.xbin"
    xbin.write(g, path)
    engine = xnorinfer.load(path, threads=1).run(x)
    engine = engine[0] if isinstance(engine, list) else engine
    with torch.inference_mode():
        floats = torch_module(xbin.read(path))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(floats, engine, rtol=1e-4, atol=1e-4)


def test_vgg_like_graph(tmp_path, rng):
    b = Builder(rng, (1, 3, 12, 12))
    t = b.sign(b.int_conv("x", 16))
    t = b.bconv(t, 70, pad=1, output="bits")
    t = b.add("bmaxpool2d", [t], bits=True, kernel=[2, 2], stride=[2, 2], padding=[0, 0])
    t = b.bconv(t, 24, pad=0, output="float")
    t = b.add("flatten", [t])
    t = b.add("softmax", [b.linear(t, 10)])
    b.g.outputs = [t]
    _compare(tmp_path, b.g, rng.integers(-3, 4, size=(2, 3, 12, 12)).astype(np.float32))


def test_mlp_graph(tmp_path, rng):
    b = Builder(rng, (1, 2, 8, 8))
    t = b.add("flatten", [b.int_conv("x", 8)])
    t = b.sign(t, sign_zero="-1")
    t = b.blinear(b.blinear(t, 100, output="bits"), 10, output="float")
    b.g.outputs = [t]
    _compare(tmp_path, b.g, rng.integers(-3, 4, size=(3, 2, 8, 8)).astype(np.float32))
