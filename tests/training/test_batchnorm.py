"""Batch norm in training mode: TF's moments and zero-debiased moving averages, worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from niftyport.errors import TrainingError
from niftyport.training.batchnorm import BatchNormTraining, Debias, moments, zero_debiased_update

D = float(np.float32(1.0 - 0.9))  # TF's 1 - decay, a float32 constant


def test_moments_biased_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5, 2)).astype(np.float32)
    mean, var = moments(torch.from_numpy(x))
    axes = (0, 2, 3, 4)
    np.testing.assert_allclose(mean.numpy(), x.astype(np.float64).mean(axes), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(var.numpy(), x.astype(np.float64).var(axes, ddof=0), rtol=1e-5)


def test_fresh_average_two_updates_by_hand():
    v1, v2 = torch.tensor([2.0, -1.0]), torch.tensor([4.0, 3.0])
    d, avg1 = zero_debiased_update(Debias.fresh(v1), v1)
    np.testing.assert_allclose(avg1.numpy(), v1.numpy(), rtol=1e-6)            # 0.1 v1 / (1 - 0.9)
    d, avg2 = zero_debiased_update(d, v2)
    biased = (1 - D) * D * v1.numpy() + D * v2.numpy()                           # 0.09 v1 + 0.1 v2
    np.testing.assert_allclose(d.biased.numpy(), biased, rtol=1e-6)
    np.testing.assert_allclose(avg2.numpy(), biased / (1 - (1 - D) ** 2), rtol=1e-6)
    assert d.local_step.item() == 2.0 and d.local_step.dtype == torch.float32


def test_long_running_average_is_the_biased_accumulator():
    # the zoo checkpoint's accumulators are at local_step 33000: (1 - 0.9^33001) is 1 in float32
    biased, value = torch.tensor([-27.475075]), torch.tensor([3.0])
    d, avg = zero_debiased_update(Debias(biased, torch.tensor(33000.0)), value)
    expected = -27.475075 - (-27.475075 - 3.0) * D
    np.testing.assert_allclose(avg.numpy(), [expected], rtol=1e-6)
    np.testing.assert_allclose(d.biased.numpy(), [expected], rtol=1e-6)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1, bias=False)
        self.bn = nn.BatchNorm3d(2, eps=1e-5)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_training_forward_uses_batch_moments_and_tf_update():
    torch.manual_seed(0)
    model = Tiny().train()
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1, 1))
        model.bn.running_mean.fill_(7.0)
    bn = BatchNormTraining(model)
    x = torch.randn(2, 1, 3, 4, 2)
    with bn.capture():
        y = model(x)
    h = np.stack([x.numpy()[:, 0], -2 * x.numpy()[:, 0]], 1).astype(np.float64)
    mean, var = h.mean((0, 2, 3, 4)), h.var((0, 2, 3, 4))
    expected = (h - mean.reshape(1, 2, 1, 1, 1)) / np.sqrt(var.reshape(1, 2, 1, 1, 1) + 1e-5)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(model.bn.running_mean, torch.full((2,), 7.0))          # torch's own update is off
    assert model.bn.track_running_stats                                          # and restored afterwards
    bn.apply()
    # a fresh zero-debiased average is the first value: the mean, and the *biased* variance
    np.testing.assert_allclose(model.bn.running_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(model.bn.running_var.numpy(), var, rtol=1e-5)
    n = h.size / 2
    assert abs(var[0] * n / (n - 1) - var[0]) > 1e-3  # a control: torch's unbiased variance differs


def test_eval_mode_forward_is_refused():
    model = Tiny().eval()
    bn = BatchNormTraining(model)
    with pytest.raises(TrainingError, match="eval mode"), bn.capture():
        model(torch.zeros(1, 1, 2, 2, 2))
