"""NiftyNet's optimisers against values computed by hand from TensorFlow 1's kernel formulas.

Expected values are worked out here in float64 from the formulas of
``tensorflow/core/kernels/training_ops.cc`` with NiftyNet's constants
(``niftynet/engine/application_optimiser.py``), the constants rounded to
float32 as TensorFlow rounds them; the code under test computes in float32.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from niftyport.errors import TrainingError
from niftyport.training import optimisers as opt

F32 = np.float32


def tf_const(x: float) -> float:
    """A Python float as TensorFlow's float32 constant, back in float64."""
    return float(F32(x))


def one_minus(x: float) -> float:
    """``T(1) - x`` in float32 (how the kernels form ``1 - beta``), in float64."""
    return float(F32(1.0) - F32(x))


def run(optimiser_cls, var0, grads, lr, **kwargs):
    """Apply ``grads`` (one per step) to a parameter starting at ``var0``; returns (param, optimiser)."""
    p = torch.nn.Parameter(torch.tensor(var0, dtype=torch.float32))
    o = optimiser_cls([p], lr, **kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float32)
        o.step()
    return p, o


def close(actual, expected, rtol=2e-7, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual.detach() if hasattr(actual, "detach") else actual, np.float64),
                               expected, rtol=rtol, atol=atol)


def test_gradient_descent_by_hand():
    p, _ = run(opt.GradientDescent, [1.0, -2.0], [[0.5, 0.25]], 0.1)
    close(p, [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 0.25])      # 0.95, -2.025


def test_momentum_two_steps_by_hand():
    g1, g2 = np.array([0.5, -1.0]), np.array([0.25, 2.0])
    p, o = run(opt.Momentum, [1.0, 1.0], [g1, g2], 0.1)
    accum = 0.9 * g1 + g2                              # accum = accum * 0.9 + g, from 0
    close(o.state[p]["momentum"], accum)
    close(p, 1.0 - 0.1 * g1 - 0.1 * accum)


def test_nesterov_by_hand():
    g1, g2 = np.array([0.5, -1.0]), np.array([0.25, 2.0])
    p, _ = run(opt.Nesterov, [1.0, 1.0], [g1, g2], 0.1)
    a1 = g1
    v1 = 1.0 - (0.1 * g1 + 0.1 * 0.9 * a1)             # var -= g * lr + accum * momentum * lr
    a2 = 0.9 * a1 + g2
    close(p, v1 - (0.1 * g2 + 0.1 * 0.9 * a2), rtol=5e-7)


def test_adagrad_starts_at_0_1():
    p, o = run(opt.Adagrad, [1.0], [[0.3]], 0.5)
    close(o.state[p]["accumulator"], [0.1 + 0.09])     # 0.19
    close(p, [1.0 - 0.5 * 0.3 / np.sqrt(0.19)], rtol=1e-6)  # TF's rsqrt


def test_adagrad_fresh_accumulator_is_0_1():
    p = torch.nn.Parameter(torch.zeros(3))
    o = opt.Adagrad([p], 0.1)
    close(o.state[p]["accumulator"], [0.1, 0.1, 0.1])


def test_rmsprop_mean_square_starts_at_one():
    g = np.array([0.3, -2.0])
    p, o = run(opt.RMSProp, [1.0, 1.0], [g], 0.01)
    ms = 1.0 + (g ** 2 - 1.0) * one_minus(0.9)         # ms += (g^2 - ms) * (1 - decay), ms0 = 1
    mom = 0.01 * g / np.sqrt(ms + 1e-10)               # momentum 0: mom = g * lr / sqrt(ms + eps)
    close(o.state[p]["rms"], ms)
    close(o.state[p]["momentum"], mom, rtol=1e-6)
    close(p, 1.0 - mom, rtol=1e-6)


def adam_reference(var, grads, lr, b1p=0.9, b2p=0.999):
    """TF's Adam in float64 with float32 constants; returns var, m, v, beta powers."""
    var = np.asarray(var, np.float64)
    m = np.zeros_like(var)
    v = np.zeros_like(var)
    for g in grads:
        g = np.asarray(g, np.float64)
        alpha = tf_const(lr) * np.sqrt(one_minus(b2p)) / one_minus(b1p)
        m = m + (g - m) * one_minus(0.9)
        v = v + (g * g - v) * one_minus(0.999)
        var = var - m * alpha / (np.sqrt(v) + tf_const(1e-8))
        b1p, b2p = float(F32(b1p) * F32(0.9)), float(F32(b2p) * F32(0.999))
    return var, m, v, b1p, b2p


def test_adam_first_step_is_lr_times_sign():
    # m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1: the step is lr * g / |g| (|g| >> eps)
    p, _ = run(opt.Adam, [1.0, 1.0], [[0.5, -3.0]], 0.1)
    close(p, [0.9, 1.1], rtol=1e-6)


def test_adam_three_steps():
    rng = np.random.default_rng(3)
    var0 = rng.normal(size=7)
    grads = rng.normal(size=(3, 7)) * np.array([1e-6, 1e-3, 1, 10, 1e-2, 1e2, 1e-4])
    p, o = run(opt.Adam, var0, grads, 0.001)
    var, m, v, b1p, b2p = adam_reference(var0.astype(F32), grads.astype(F32), 0.001)
    close(o.state[p]["m"], m, rtol=1e-6)
    close(o.state[p]["v"], v, rtol=1e-6)
    close(p, var, rtol=1e-6)
    group = o.param_groups[0]
    assert group["beta1_power"] == b1p == float(F32(0.9) * F32(0.9) * F32(0.9) * F32(0.9))
    assert group["beta2_power"] == b2p


def test_adam_continues_the_zoo_beta_powers():
    # the model zoo checkpoint: beta1_power 0 (underflowed), beta2_power 4.578e-15 -> alpha = lr
    p = torch.nn.Parameter(torch.tensor([1.0]))
    o = opt.Adam([p], 0.001)
    o.param_groups[0].update(beta1_power=0.0, beta2_power=4.5780123e-15)
    assert opt.adam_alpha(0.001, 0.0, 4.5780123e-15) == F32(0.001)
    p.grad = torch.tensor([2.0])
    o.step()
    assert o.param_groups[0]["beta1_power"] == 0.0
    assert o.param_groups[0]["beta2_power"] == float(F32(4.5780123e-15) * F32(0.999))


def test_adam_is_not_torch_adam():
    # tiny gradients: TF adds eps to sqrt(v) before the bias correction is applied to the step, torch after
    g = [[1e-9]]
    p, _ = run(opt.Adam, [0.0], g, 0.1)
    var, *_ = adam_reference([0.0], g, 0.1)
    close(p, var, rtol=1e-6)
    q = torch.nn.Parameter(torch.tensor([0.0]))
    torch_adam = torch.optim.Adam([q], lr=0.1, eps=1e-8)
    q.grad = torch.tensor([1e-9])
    torch_adam.step()
    assert abs(float(q.detach()) - float(p.detach())) > 0.5 * abs(float(p.detach()))  # a control: the two rules really differ here


def test_no_gradient_no_update_but_beta_powers_advance():
    p = torch.nn.Parameter(torch.ones(2))
    o = opt.Adam([p], 0.1)
    o.step()
    assert torch.equal(p.detach(), torch.ones(2))
    assert o.param_groups[0]["beta1_power"] == float(F32(0.9) * F32(0.9))


def test_slots_exist_before_the_first_step_and_travel_in_state_dict():
    p = torch.nn.Parameter(torch.ones(2, 3))
    o = opt.RMSProp([p], 0.1)
    assert set(o.state[p]) == {"rms", "momentum"}
    assert torch.equal(o.state[p]["rms"], torch.ones(2, 3))
    a = opt.Adam([p], 0.1)
    a.param_groups[0]["beta2_power"] = 0.5
    b = opt.Adam([p], 0.1)
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["beta2_power"] == 0.5


@pytest.mark.parametrize("name, cls", [("adam", opt.Adam), ("GradientDescent", opt.GradientDescent),
                                       ("momentum", opt.Momentum), ("nesterov", opt.Nesterov),
                                       ("adagrad", opt.Adagrad), ("rmsprop", opt.RMSProp)])
def test_niftynet_names(name, cls):
    assert type(opt.make_optimiser(name, [torch.nn.Parameter(torch.ones(1))], 0.1)) is cls


def test_bad_names_and_rates():
    with pytest.raises(TrainingError, match="unknown optimiser 'sgd'.*adam"):
        opt.make_optimiser("sgd", [torch.nn.Parameter(torch.ones(1))], 0.1)
    with pytest.raises(TrainingError, match="lr=0"):
        opt.Adam([torch.nn.Parameter(torch.ones(1))], 0)
