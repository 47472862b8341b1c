"""Grouped binary convolutions: a conv with groups g > 1 on a sign, with ±alpha weights per output
channel, becomes g ungrouped convs (each a bconv2d after BinaryWeights) and a concat.

The binary conv has no groups, so such a layer ran float. Group j reads input channels
[j * I_g, (j + 1) * I_g) and writes output channels [j * O_g, (j + 1) * O_g): the rewrite slices the
sign's FLOAT input to the group's channels, applies the same sign there (its per-channel thresholds
sliced; a scalar activation scale `c * sign(x)` is kept after it), runs an ungrouped conv with the
group's weights (and bias) and concatenates the g outputs along channels. Every step is exact: a
sign, a scalar scale and a slice commute elementwise, and each group's sum is the sum the grouped
conv computes for those channels.

The per-channel ops that alone read such a concat (BatchNorm, per-channel add / sub / mul / div,
neg, relu, hardtanh, a max-pool, the next sign) then move into the g branches with their parameters
sliced, so each group's BatchNorm and sign fold into its bconv2d (integer threshold output) and the
concat of their bits becomes a `bconcat`.

Only when a group has at least MIN_GROUP_CHANNELS input channels: a depthwise binary conv
(I_g = 1) would become one bconv2d per channel, each summing only KH * KW taps of one 64-bit word
(almost all of it padding), plus a slice and a sign per channel: the float depthwise conv is
cheaper, so such a layer stays float and its warning says why.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from xnorinfer.convert.attrs import (
    ActSignAttrs,
    BinaryConvAttrs,
    ChannelStage,
    ConvAttrs,
    NoAttrs,
    PoolAttrs,
    SliceAttrs,
    Stage,
)
from xnorinfer.convert.graph import Model, Node
from xnorinfer.convert.patterns import _one_magnitude_up_to_rounding, _per_channel, _single_consumer, uniform_value

MIN_GROUP_CHANNELS = 8  # input channels per group below which a grouped binary conv stays float

_CONCATS = "_grouped_binary_concats"  # metadata: the concats this rewrite made (their outputs)
_SLICES = "_grouped_binary_slices"  # metadata: the slices of a sign's float input this rewrite made
_ELEMENTWISE = ("neg", "relu", "hardtanh")  # per-element ops without parameters: copied per branch
_PER_CHANNEL_CONST = ("add", "sub", "mul", "div")


def _signed_input(model: Model, value: str) -> tuple[Node, Node | None] | None:
    """(sign, scale) when `value` = act_sign(x) or c * act_sign(x) (c one constant), a 4-D value."""
    p = model.producer(value)
    scale = None
    if p is not None and p.op == "mul" and len(p.inputs) == 2:
        consts = [v for v in p.inputs if model.is_const(v)]
        if len(consts) != 1 or uniform_value(model.const(consts[0])) is None:
            return None
        if model.const(consts[0]).size != 1:  # type: ignore[union-attr]
            return None
        scale = p
        p = model.producer(next(v for v in p.inputs if not model.is_const(v)))
    if p is None or p.op != "act_sign" or p.attrs_as(ActSignAttrs).threshold.shape[0] != 1:
        return None
    x = p.inputs[0]
    if len(model.shapes[x]) != 4 or model.shapes[x] != model.shapes[value]:
        return None
    return p, scale


def _group_channels(model: Model, node: Node) -> tuple[int, int] | None:
    """(groups, input channels per group) for a grouped conv with one |W| per output channel on a sign."""
    a = node.attrs
    if node.op != "conv2d" or not isinstance(a, ConvAttrs) or a.groups == 1 or a.dilation != (1, 1):
        return None
    w = model.const(node.inputs[1])
    if w is None or w.ndim != 4 or _signed_input(model, node.inputs[0]) is None:
        return None
    if not _one_magnitude_up_to_rounding(np.abs(w.reshape(w.shape[0], -1))):
        return None
    return a.groups, int(w.shape[1])


class GroupedBinary:
    """Phase 2: grouped binary conv -> g convs on sliced signs + concat; per-channel ops into the branches."""

    name = "grouped_binary"

    def apply(self, model: Model) -> tuple[Model, bool]:
        changed = False
        for node in list(model.nodes):
            if node not in model.nodes:
                continue
            if node.op == "concat" and node.output in model.metadata.get(_CONCATS, ()):
                changed |= self._into_branches(model, node)
                continue
            if node.op == "slice" and node.inputs[0] in model.metadata.get(_CONCATS, ()):
                changed |= _slice_of_branch(model, node)
                continue
            if node.op == "bconv2d" and _split_by_slices(model, node):
                changed = True
                continue
            found = _group_channels(model, node)
            if found is None:
                continue
            groups, per_group = found
            if per_group >= MIN_GROUP_CHANNELS:
                changed |= self._split(model, node, groups, per_group)
            else:
                self._explain(model, node, groups, per_group)
        return model, changed

    @staticmethod
    def _explain(model: Model, node: Node, groups: int, per_group: int) -> None:
        key = node.path or node.output
        warnings = model.metadata.get("binary_warnings", {})
        if key in warnings and "input channels per group" not in warnings[key]:
            kind = "a depthwise conv" if per_group == 1 else f"{per_group} input channels per group"
            warnings[key] += (
                f"; it stays float: {kind} (groups {groups}) would run as {groups} binary convs of "
                f"{per_group} input channel(s) each (fewer than {MIN_GROUP_CHANNELS} input channels per group "
                "fill too little of a 64-bit word), slower than the float conv"
            )

    @staticmethod
    def _split(model: Model, node: Node, groups: int, per_group: int) -> bool:
        w = model.const(node.inputs[1])
        assert w is not None
        bias = model.const(node.inputs[2]) if len(node.inputs) > 2 else None
        if len(node.inputs) > 2 and bias is None:
            return False  # (a bias that is not a constant: keep the grouped conv)
        signed = _signed_input(model, node.inputs[0])
        assert signed is not None
        sign, scale = signed
        x = sign.inputs[0]
        n, _, h, wd = model.shapes[x]
        out_shape = model.shapes[node.output]
        per_out = w.shape[0] // groups
        conv = node.attrs_as(ConvAttrs)
        thr = sign.attrs_as(ActSignAttrs)
        new: list[Node] = []
        outs: list[str] = []

        def const(stem: str, a: np.ndarray) -> str:
            v = model.fresh(f"{node.output}_{stem}")
            model.consts[v] = a
            return v

        for j in range(groups):
            lo, hi = j * per_group, (j + 1) * per_group
            xs = model.fresh(f"{node.output}_g{j}_in")
            model.shapes[xs] = (n, per_group, h, wd)
            new.append(Node("slice", [x], xs, SliceAttrs(1, lo, hi, 1), node.path, "", node.where))
            model.metadata.setdefault(_SLICES, set()).add(xs)
            bits = model.fresh(f"{node.output}_g{j}_sign")
            model.shapes[bits] = model.shapes[xs]
            attrs = replace(thr, threshold=thr.threshold[:, lo:hi].copy())
            new.append(Node("act_sign", [xs], bits, attrs, sign.path, "", sign.where))
            if scale is not None:
                scaled = model.fresh(f"{node.output}_g{j}_scaled")
                model.shapes[scaled] = model.shapes[xs]
                ins = [v if model.is_const(v) else bits for v in scale.inputs]
                new.append(Node("mul", ins, scaled, NoAttrs(), scale.path, "", scale.where))
                bits = scaled
            o_lo, o_hi = j * per_out, (j + 1) * per_out
            ins = [bits, const(f"g{j}_weight", np.ascontiguousarray(w[o_lo:o_hi]))]
            if bias is not None:
                ins.append(const(f"g{j}_bias", np.ascontiguousarray(np.asarray(bias).reshape(-1)[o_lo:o_hi])))
            y = model.fresh(f"{node.output}_g{j}")
            model.shapes[y] = (out_shape[0], per_out, *out_shape[2:])
            new.append(Node("conv2d", ins, y, replace(conv, groups=1), node.path, "", node.where))
            outs.append(y)
        new.append(Node("concat", outs, node.output, NoAttrs(), node.path, node.origin, node.where))
        model.metadata.setdefault(_CONCATS, set()).add(node.output)
        key = node.path or node.output  # (the groups' convs are judged under their own keys when it is unnamed)
        model.metadata.get("float_layers", {}).pop(key, None)
        model.metadata.get("binary_warnings", {}).pop(key, None)
        model.metadata.setdefault("grouped_binary_layers", {})[node.path or node.output] = (
            f"groups {groups}: {groups} binary convs of {per_group} input channels each, concatenated"
        )
        i = model.nodes.index(node)
        model.nodes[i : i + 1] = new
        return True

    @staticmethod
    def _into_branches(model: Model, cat: Node) -> bool:
        """op(concat(y_1..y_g)) -> concat(op_1(y_1)..op_g(y_g)) for a per-channel op alone reading the concat."""
        user = _single_consumer(model, cat.output)
        if user is None or user.inputs[0] != cat.output and user.op not in ("add", "mul"):
            return False
        if user.op != "maxpool2d" and model.shapes[user.output] != model.shapes[cat.output]:
            return False  # (a constant that broadcasts the tensor to a larger shape)
        params = _branch_params(model, user, cat.output)
        if params is None:
            return False
        new: list[Node] = []
        outs: list[str] = []
        lo = 0
        for j, y in enumerate(cat.inputs):
            c = model.shapes[y][1]
            out = model.fresh(f"{user.output}_g{j}")
            model.shapes[out] = (model.shapes[user.output][0], c, *model.shapes[user.output][2:])
            ins, attrs = params(lo, lo + c, y)
            new.append(Node(user.op, ins, out, attrs, user.path, "", user.where))
            outs.append(out)
            lo += c
        new.append(Node("concat", outs, user.output, NoAttrs(), user.path, user.origin, user.where))
        model.metadata[_CONCATS].add(user.output)
        model.nodes[model.nodes.index(user) : model.nodes.index(user) + 1] = new
        return True


def _slice_of_branch(model: Model, node: Node) -> bool:
    """slice(concat(y_1..y_g)) covering exactly the channels of one y_j -> y_j (the next grouped layer
    reads the previous one's groups directly, so their signs stay folded into their binary convs)."""
    a = node.attrs_as(SliceAttrs)
    cat = model.producer(node.inputs[0])
    if cat is None or a.dim != 1 or a.step != 1:
        return False
    lo = 0
    for y in cat.inputs:
        c = model.shapes[y][1]
        if (lo, lo + c) == (a.start, a.stop) and model.shapes[y] == model.shapes[node.output]:
            model.replace_uses(node.output, y)
            return True
        lo += c
    return False


def _split_by_slices(model: Model, node: Node) -> bool:
    """A float-output bconv2d read only by disjoint channel slices of the groups' signs -> one bconv2d per
    slice (its weights, alpha and epilogue sliced), so each group's sign folds into its own binary conv:
    a binary layer before a grouped one keeps its integer threshold output."""
    layer = node.attrs_as(BinaryConvAttrs)
    users = model.consumers(node.output)
    slices = model.metadata.get(_SLICES, set())
    if layer.sign is not None or len(node.inputs) != 1 or node.output in model.outputs or not users:
        return False
    if any(u.op != "slice" or u.output not in slices or u.inputs != [node.output] for u in users):
        return False
    ranges = sorted((u.attrs_as(SliceAttrs).start, u.attrs_as(SliceAttrs).stop) for u in users)
    if any(u.attrs_as(SliceAttrs).dim != 1 or u.attrs_as(SliceAttrs).step != 1 for u in users):
        return False
    if any(a[1] > b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
        return False  # (overlapping slices would compute channels twice)
    channels = layer.alpha.shape[0]
    new: dict[int, Node] = {}
    for u in users:
        a = u.attrs_as(SliceAttrs)
        chain = _sliced_chain(layer.chain, channels, a.start, a.stop)
        if chain is None:
            return False
        attrs = replace(
            layer,
            weight_sign=np.ascontiguousarray(layer.weight_sign[a.start : a.stop]),
            alpha=np.ascontiguousarray(layer.alpha[a.start : a.stop]),
            chain=chain,
        )
        new[model.nodes.index(u)] = Node("bconv2d", list(node.inputs), u.output, attrs, node.path, u.origin, node.where)
    for i, n in new.items():
        model.nodes[i] = n
    return True


def _sliced_chain(chain: tuple[Stage, ...], channels: int, lo: int, hi: int) -> tuple[Stage, ...] | None:
    """The epilogue stages restricted to channels [lo, hi) (None when a stage's parameters are not per channel)."""

    def cut(v: np.ndarray) -> np.ndarray | None:
        a = np.asarray(v)
        if a.size == 1:
            return a
        return np.ascontiguousarray(a.reshape(-1)[lo:hi]) if a.size == channels else None

    out: list[Stage] = []
    for stage in chain:
        if isinstance(stage, ChannelStage):
            v = cut(stage.v)
            if v is None:
                return None
            out.append(replace(stage, v=v))
        else:
            parts = [cut(p) for p in (stage.gamma, stage.beta, stage.mean, stage.var)]
            if any(p is None for p in parts):
                return None
            g, b, m, var = parts
            out.append(replace(stage, gamma=g, beta=b, mean=m, var=var))
    return tuple(out)


def _branch_params(model: Model, user: Node, value: str):  # type: ignore[no-untyped-def]
    """A function (lo, hi, branch input) -> (inputs, attrs) for `user` restricted to channels [lo, hi), or None."""
    if user.op in _ELEMENTWISE and len(user.inputs) == 1:
        return lambda lo, hi, y: ([y], user.attrs)
    if user.op == "maxpool2d":
        pool = user.attrs_as(PoolAttrs)
        if pool.min_channels is not None:
            return None
        return lambda lo, hi, y: ([y], pool)
    if user.op == "act_sign":
        sign = user.attrs_as(ActSignAttrs)
        if sign.threshold.shape[0] != 1:
            return None
        return lambda lo, hi, y: ([y], replace(sign, threshold=sign.threshold[:, lo:hi].copy()))
    if user.op == "batch_norm":
        consts = [model.const(v) for v in user.inputs[1:5]]
        if len(user.inputs) != 5 or any(c is None or c.shape != (model.shapes[value][1],) for c in consts):
            return None

        def bn(lo: int, hi: int, y: str) -> tuple[list[str], object]:
            names = []
            for v, c in zip(user.inputs[1:5], consts, strict=True):
                names.append(model.fresh(v))
                model.consts[names[-1]] = np.ascontiguousarray(c[lo:hi])  # type: ignore[index]
            return [y, *names], user.attrs

        return bn
    if user.op in _PER_CHANNEL_CONST and len(user.inputs) == 2:
        k = 1 if user.inputs[0] == value else 0
        if user.inputs[1 - k] != value or (k == 0 and user.op not in ("add", "mul")):
            return None
        c = model.const(user.inputs[k])
        v = _per_channel(model, user.inputs[k], value)
        if c is None or v is None:
            return None
        rank = len(model.shapes[value])

        def per_channel(lo: int, hi: int, y: str) -> tuple[list[str], object]:
            name = model.fresh(user.inputs[k])
            model.consts[name] = v[lo:hi].astype(c.dtype).reshape((1, hi - lo) + (1,) * (rank - 2))
            return ([y, name] if k == 1 else [name, y]), user.attrs

        return per_channel
    return None
