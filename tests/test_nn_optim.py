"""Bop: flip exactly where |m| > tau and sign(m) == sign(w); split_binary_params."""

from __future__ import annotations

import pytest
import torch

from xnorinfer.nn import BinaryConv2d, BinaryLinear, Bop, split_binary_params


def test_bop_hand_made_example():
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
    opt = Bop([w], threshold=0.5, gamma=0.5)
    # step 1: m = 0.5 * g
    w.grad = torch.tensor([2.0, -2.0, -2.0, 2.0, 0.8, -0.8, 1.2, 0.0])
    opt.step()
    m1 = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.4, -0.4, 0.6, 0.0])
    torch.testing.assert_close(opt.state[w]["ema"], m1)
    # flips: idx0 (m>tau, w=+1), idx2 (m<-tau, w=-1), idx6 (0.6 > 0.5, w=+1)
    # kept: idx1/idx3 (sign disagrees), idx4/idx5 (|m| <= tau), idx7 (m = 0)
    assert w.detach().tolist() == [-1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0, -1.0]
    assert opt.last_flips == 3
    # step 2: m = 0.5 m + 0.5 g
    w.grad = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.8, -0.8, 0.0, -2.0])
    opt.step()
    m2 = 0.5 * m1 + 0.5 * w.grad
    torch.testing.assert_close(opt.state[w]["ema"], m2)
    # m2 = [.5, -.5, -.5, .5, .6, -.6, .3, -1]: idx4 (0.6, w=+1) and idx5 (-0.6, w=-1) flip now,
    # idx7 (-1, w=-1) flips, idx0..3 sit at |m| = tau exactly -> no flip (strict >)
    assert w.detach().tolist() == [-1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0]
    assert opt.last_flips == 3


def test_bop_skips_params_without_grad_and_validates():
    w = torch.nn.Parameter(torch.ones(3))
    Bop([w]).step()
    assert w.detach().tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        Bop([w], gamma=0.0)
    with pytest.raises(ValueError):
        Bop([w], threshold=-1)


def test_split_binary_params():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        BinaryLinear(8, 8, bias=True, weight_scale="learned"),
        torch.nn.BatchNorm1d(8),
        BinaryConv2d(2, 2, 1),
    )
    binary, other = split_binary_params(model)
    assert [id(p) for p in binary] == [id(model[1].weight), id(model[3].weight)]
    ids = {id(p) for p in other}
    assert id(model[1].binarizer.alpha) in ids and id(model[1].bias) in ids and id(model[0].weight) in ids
    assert len(binary) + len(other) == len(list(model.parameters()))
