"""Each zoo model: convert through torch.export, then check the IR reference against eager PyTorch.

Binary activations are compared bit for bit with the outputs of the models' sign modules (forward
hooks); the logits within a relative tolerance; the top-1 class on 64 random inputs must agree.
"""

from __future__ import annotations

import models_zoo as zoo
import numpy as np
import pytest
import torch

from xnorinfer.convert import convert, format_table, reference
from xnorinfer.convert.pack import unpack_last
from xnorinfer.ops import OPS

N_INPUTS = 64
# binary conv / linear layers each zoo model defines (BinConv / BinLinear modules)
EXPECTED_BINARY = {"binarynet_vgg": 7, "xnornet": 3, "reactnet": 3, "binaryduo": 2, "binary_mlp": 2}


@pytest.fixture(scope="module", params=sorted(zoo.ZOO))
def converted(request):
    name = request.param
    model = zoo.build(name)
    graph = convert(model, (zoo.example_input(model),), engine=False)  # raises if verification fails
    x = zoo.example_input(model, N_INPUTS, seed=123)
    env = reference.run(graph, x.numpy(), keep_all=True)
    return name, model, graph, x, env


def _hooked_signs(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    seen: dict[str, np.ndarray] = {}
    handles = []
    for path, mod in model.named_modules():
        if isinstance(mod, zoo.SIGN_MODULES):
            handles.append(
                mod.register_forward_hook(lambda _m, _i, out, path=path: seen.__setitem__(path, out.detach().numpy()))
            )
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    return seen, out


def test_graph_is_valid_ir(converted):
    _, _, graph, _, _ = converted
    graph.validate()
    assert all(op.kind in OPS for op in graph.ops)
    for op in graph.ops:
        if op.kind in ("bconv2d", "blinear"):
            assert op.params["weight"].dtype == np.uint64
            if op.attrs["output"] == "bits":
                assert op.params["threshold"].dtype == np.int32 and op.params["flip"].dtype == np.uint8


def test_every_binary_layer_is_recognised(converted):
    name, model, graph, _, _ = converted
    binary = [op for op in graph.ops if op.kind in ("bconv2d", "blinear")]
    assert len(binary) == EXPECTED_BINARY[name]
    bin_paths = {p for p, m in model.named_modules() if isinstance(m, (zoo.BinConv, zoo.BinLinear))}
    assert {op.name for op in binary} == bin_paths
    # the first conv / last linear (and nothing binary) stayed float, with a reason
    float_layers = graph.metadata["float_layers"]
    assert not (set(float_layers) & bin_paths)
    assert all(isinstance(why, str) and why for why in float_layers.values())


def test_binary_activations_bit_exact(converted):
    _, model, graph, x, env = converted
    hooked, _ = _hooked_signs(model, x)
    covered = set()
    for tname, info in graph.metadata["binary_outputs"].items():
        if info["module"] not in hooked:
            continue
        t = hooked[info["module"]]
        t = np.transpose(t, (0, 2, 3, 1)) if t.ndim == 4 else t
        if "perm" in info:
            t = t[:, info["perm"]]
        ref_bits = unpack_last(env[tname], graph.tensors[tname].shape[-1])
        assert np.count_nonzero(t == 0) == 0, "an activation sits exactly on sign(0)"
        assert np.array_equal(ref_bits, t < 0), f"{info['module']}: binary activations differ"
        covered.add(info["module"])
    assert covered == set(hooked), f"sign modules without an IR binary tensor: {set(hooked) - covered}"


def test_outputs_and_top1_agree(converted):
    _, model, graph, x, env = converted
    with torch.no_grad():
        want = model(x).numpy().astype(np.float64)
    got = env[graph.outputs[0]]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_report_and_metadata(converted):
    name, _, graph, _, _ = converted
    table = format_table(graph)
    for op in graph.ops:
        assert op.kind in table
    assert "binary MACs" in table and "stayed float" in table
    zero = graph.metadata["sign_zero"]
    assert zero in {"sign(0) = +1", "sign(0) = -1"} or zero.startswith("torch.sign")
    v = graph.metadata["verification"]
    assert v["n_inputs"] >= 64 and v["top1_agreement"] == 1.0 and not v["problems"]


def test_engine_matches_reference(converted):
    """The C++ engine (when built with the session runtime) gives the reference's answers."""
    import xnorinfer

    if not hasattr(xnorinfer, "load"):
        pytest.skip("xnorinfer.load (the session runtime) is not available in this build")
    from xnorinfer.convert.verify import engine_run

    _, _, graph, x, env = converted
    got = engine_run(graph, x.numpy(), lambda data: xnorinfer.load(data, 1))
    ref = env[graph.outputs[0]]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert np.array_equal(got.argmax(1), ref.argmax(1))
