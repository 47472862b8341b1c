"""Binary conv1d: a sign reshaped to conv1d's (N, C, 1, L) becomes a sign of the reshaped value.

nn.Conv1d is captured as reshape (N, C, L) -> (N, C, 1, L), a height-1 conv2d and a reshape back
(capture._conv1d). A sign before that first reshape left the conv2d reading a float reshape of bits,
which binary recognition does not follow (patterns._bits_view: lowering would unpack there), so the
layer ran as bwconv2d on unpacked signs. This rewrite moves the sign after the reshape: the sign is
per channel and the reshape keeps the channel axis (1) and every value, so the result is the same
tensor, and the conv2d then reads an act_sign: a bconv2d.
"""

from __future__ import annotations

from xnorinfer.convert.attrs import NoAttrs
from xnorinfer.convert.graph import Model, Node, Rewrite


class SignBeforeUnsqueeze(Rewrite):
    """reshape(act_sign(x)) with (N, C, L) -> (N, C, 1, L) -> act_sign(reshape(x))."""

    name = "sign_before_unsqueeze"

    def rewrite(self, model: Model, node: Node) -> bool:
        if node.op != "reshape" or model.is_const(node.inputs[0]):
            return False
        src = node.inputs[0]
        a, b = tuple(model.shapes[src]), tuple(model.shapes[node.output])
        if len(a) != 3 or b != (a[0], a[1], 1, a[2]):
            return False
        sign = model.producer(src)
        if sign is None or sign.op != "act_sign":
            return False
        mid = model.fresh(node.output)
        model.shapes[mid] = b
        reshaped = Node("reshape", [sign.inputs[0]], mid, NoAttrs(), node.path, "", node.where)
        signed = Node(
            "act_sign", [mid], node.output, sign.attrs, sign.path, sign.origin, sign.where
        )  # torch.sign's value
        i = model.nodes.index(node)
        model.nodes[i : i + 1] = [reshaped, signed]
        return True
