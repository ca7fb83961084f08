"""NiftyNet's segmentation losses against NumPy formulas written from ``niftynet/layer/loss_segmentation.py`` (0.6.0).

The NumPy side works in float64 on NiftyNet's layout ``(N, X, Y, Z, C)``,
reshaped per batch element to ``(V, C)`` as NiftyNet's ``LossFunction`` does;
the code under test takes torch's ``(N, C, X, Y, Z)`` in float32.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from niftyport.errors import TrainingError
from niftyport.training.losses import LOSSES, M_TREE, segmentation_loss

EPS = 1e-5
N, C, SPATIAL = 2, 4, (5, 4, 3)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def one_hot(labels, c):
    return np.eye(c)[labels]


# NumPy formulas, one batch element: p (V, C), labels (V,), w (V,) or None ---------------------------

def np_dice(p, labels, w=None, square=True):
    g = one_hot(labels, p.shape[1])
    w = np.ones(len(p)) if w is None else w
    num = 2 * (w[:, None] * g * p).sum(0)
    den = (w[:, None] * (p ** 2 if square else p)).sum(0) + (w[:, None] * g).sum(0)
    return 1 - np.mean((num + EPS) / (den + EPS))


def np_dice_dense(p, g, square=True):
    num = 2 * (p * g).sum(0)
    den = ((p ** 2).sum(0) + (g ** 2).sum(0)) if square else (p.sum(0) + g.sum(0))
    return 1 - np.mean((num + EPS) / (den + EPS))


def np_gdsc(p, labels, w=None):
    g = one_hot(labels, p.shape[1])
    w = np.ones(len(p)) if w is None else w
    ref = (w[:, None] * g).sum(0)
    inter = (w[:, None] * g * p).sum(0)
    seg = (w[:, None] * p).sum(0)
    with np.errstate(divide="ignore"):
        weights = 1.0 / ref ** 2
    finite = weights[np.isfinite(weights)]
    weights[~np.isfinite(weights)] = finite.max() if finite.size else 0.0
    with np.errstate(invalid="ignore"):
        score = 2 * (weights * inter).sum() / (weights * np.maximum(seg + ref, 1)).sum()
    return 1 - (1.0 if np.isnan(score) else score)


def np_xent(logits, labels, w=None):
    ce = -np.log(softmax(logits)[np.arange(len(labels)), labels])
    if w is None:
        return ce.mean()
    return (ce * w / max(w.sum(), 1e-6)).sum()


def np_dice_plus_xent(logits, labels, w=None):
    s, g = softmax(logits), one_hot(labels, logits.shape[1])
    w = np.ones(len(s)) if w is None else w
    num = 2 * (w[:, None] * g * s).sum(0)
    den = (w[:, None] * s).sum(0) + (w[:, None] * g).sum(0)
    return -(num + EPS) / (den + EPS) + np_xent(logits, labels, None if np.all(w == 1) else w)


def np_sensspec(p, labels, r=0.05):
    g = one_hot(labels, p.shape[1])
    e = (g - p) ** 2
    return np.sum(r * (e * g).sum(0) / (g.sum(0) + EPS) + (1 - r) * (e * (1 - g)).sum(0) / ((1 - g).sum(0) + EPS))


def np_tversky(p, labels, w=None, a=0.5, b=0.5):
    g = one_hot(labels, p.shape[1])
    w = np.ones((len(p), 1)) if w is None else w[:, None]
    tp = (w * p * g).sum()
    return 1 - tp / (tp + a * (w * p * (1 - g)).sum() + b * (w * (1 - p) * g).sum() + EPS)


def np_wgdl(p, labels):
    m = np.array(M_TREE)[:p.shape[1], :p.shape[1]]
    g = one_hot(labels, p.shape[1])
    delta = np.einsum("ij,vi,vj->v", m, p, g)
    tp = ((g @ m[0]) * (1 - delta)).sum()
    return 1 - 2 * tp / (2 * tp + delta.sum())


# ---------------------------------------------------------------------------------------------------

@pytest.fixture
def batch():
    rng = np.random.default_rng(12)
    logits = rng.normal(scale=2.0, size=(N, *SPATIAL, C)).astype(np.float32)   # NiftyNet layout
    labels = rng.integers(0, C - 1, size=(N, *SPATIAL))                          # class C-1 absent
    weights = rng.uniform(0.1, 2.0, size=(N, *SPATIAL)).astype(np.float32)
    return logits, labels, weights


def torch_inputs(logits, labels, weights):
    return (torch.from_numpy(np.moveaxis(logits, -1, 1).copy()), torch.from_numpy(labels)[:, None],
            torch.from_numpy(weights))


def per_element(fn, logits, labels, weights=None, *, probabilities=True):
    """NiftyNet's LossFunction in NumPy: flatten each element, softmax if asked, average the losses."""
    values = []
    for b in range(len(logits)):
        x = logits[b].reshape(-1, C).astype(np.float64)
        args = [softmax(x) if probabilities else x, labels[b].reshape(-1)]
        if weights is not None:
            args.append(weights[b].reshape(-1).astype(np.float64))
        values.append(fn(*args))
    return float(np.mean(values))


CASES = [("Dice", np_dice, True, True), ("Dice_NS", lambda p, l, w=None: np_dice(p, l, w, square=False), True, True),
         ("GDSC", np_gdsc, True, True), ("CrossEntropy", np_xent, False, True),
         ("DicePlusXEnt", np_dice_plus_xent, False, True), ("SensSpec", np_sensspec, True, False),
         ("Tversky", np_tversky, True, True)]


@pytest.mark.parametrize("name, fn, probabilities, weighted", CASES, ids=[c[0] for c in CASES])
def test_loss_matches_numpy(batch, name, fn, probabilities, weighted):
    logits, labels, weights = batch
    t_logits, t_labels, t_weights = torch_inputs(logits, labels, weights)
    expected = per_element(fn, logits, labels, probabilities=probabilities)
    got = segmentation_loss(t_logits, t_labels, name)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    if weighted:
        expected_w = per_element(fn, logits, labels, weights, probabilities=probabilities)
        got_w = segmentation_loss(t_logits, t_labels, name, weight_map=t_weights)
        assert float(got_w) == pytest.approx(expected_w, rel=1e-5, abs=1e-6)
        assert abs(expected_w - expected) > 1e-4  # a control: the weights change the loss


def test_sensspec_ignores_the_weight_map(batch):
    logits, labels, weights = batch
    t_logits, t_labels, t_weights = torch_inputs(logits, labels, weights)
    assert float(segmentation_loss(t_logits, t_labels, "SensSpec", weight_map=t_weights)) == \
        float(segmentation_loss(t_logits, t_labels, "SensSpec"))


def test_wgdl_matches_numpy(batch):
    logits, labels, _ = batch
    t_logits, t_labels, _ = torch_inputs(logits, labels, np.ones((N, *SPATIAL), np.float32))
    expected = per_element(np_wgdl, logits, labels)
    assert float(segmentation_loss(t_logits, t_labels, "WGDL")) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name, square", [("Dice_Dense", True), ("Dice_Dense_NS", False)])
def test_dense_dice_matches_numpy(batch, name, square):
    logits, labels, _ = batch
    scores = np.random.default_rng(5).dirichlet(np.ones(C), size=(N, *SPATIAL))  # soft labels, NiftyNet layout
    expected = np.mean([np_dice_dense(softmax(logits[b].reshape(-1, C).astype(np.float64)),
                                      scores[b].reshape(-1, C), square) for b in range(N)])
    got = segmentation_loss(torch.from_numpy(np.moveaxis(logits, -1, 1).copy()),
                            torch.from_numpy(np.moveaxis(scores, -1, 1).astype(np.float32)), name)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_dense_cross_entropy(batch):
    logits, labels, _ = batch
    g = one_hot(labels, C)
    expected = np.mean([np_xent(logits[b].reshape(-1, C).astype(np.float64), labels[b].reshape(-1))
                        for b in range(N)])
    got = segmentation_loss(torch.from_numpy(np.moveaxis(logits, -1, 1).copy()),
                            torch.from_numpy(np.moveaxis(g, -1, 1).astype(np.float32)), "CrossEntropy_Dense")
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_losses_are_per_element_then_averaged(batch):
    logits, labels, weights = batch
    t_logits, t_labels, _ = torch_inputs(logits, labels, weights)
    whole = np_dice(softmax(np.moveaxis(logits, 0, -2).reshape(-1, C).astype(np.float64)),
                    np.moveaxis(labels, 0, -1).reshape(-1))
    per = per_element(np_dice, logits, labels)
    got = float(segmentation_loss(t_logits, t_labels, "Dice"))
    assert got == pytest.approx(per, rel=1e-5)
    assert abs(whole - per) > 1e-3  # a control: pooling the batch would differ


def test_softmax_switch(batch):
    logits, labels, weights = batch
    probabilities = softmax(logits.astype(np.float64)).astype(np.float32)
    t_probs, t_labels, _ = torch_inputs(probabilities, labels, weights)
    t_logits, _, _ = torch_inputs(logits, labels, weights)
    # softmax = False: the network output is taken as probabilities
    assert float(segmentation_loss(t_probs, t_labels, "Dice", softmax=False)) == pytest.approx(
        float(segmentation_loss(t_logits, t_labels, "Dice")), rel=1e-6)
    # cross-entropy always takes logits, whatever softmax says
    assert float(segmentation_loss(t_logits, t_labels, "CrossEntropy", softmax=False)) == \
        float(segmentation_loss(t_logits, t_labels, "CrossEntropy", softmax=True))


def test_gdsc_absent_classes_take_the_largest_finite_weight():
    # one element, 3 classes; class 2 absent; volumes ref = (3, 1): weights 1/9, 1, then 1 for class 2
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.5, 0.3, 0.2], [0.1, 0.7, 0.2]])
    labels = np.array([0, 0, 0, 1])
    expected = np_gdsc(p, labels)
    inter = np.array([0.8 + 0.6 + 0.5, 0.7, 0.0])
    seg = p.sum(0)
    w = np.array([1 / 9, 1.0, 1.0])
    assert expected == pytest.approx(1 - 2 * (w * inter).sum() / (w * np.maximum(seg + [3, 1, 0], 1)).sum())
    t = torch.log(torch.tensor(p, dtype=torch.float32)).T.reshape(1, 3, 4, 1, 1)  # softmax(log p) = p
    got = segmentation_loss(t, torch.tensor(labels).reshape(1, 4, 1, 1), "GDSC")
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_gdsc_with_nothing_to_weigh_is_zero():
    t = torch.zeros(1, 2, 2, 1, 1)
    got = segmentation_loss(t, torch.zeros(1, 2, 1, 1, dtype=torch.long), "GDSC",
                            weight_map=torch.zeros(1, 2, 1, 1))
    assert float(got) == 0.0  # every weight infinite -> all 0 -> 0/0 -> score 1


def test_gradients_flow(batch):
    logits, labels, _ = batch
    t_logits, t_labels, _ = torch_inputs(logits, labels, np.ones((N, *SPATIAL), np.float32))
    for name, spec in LOSSES.items():
        x = t_logits.clone().requires_grad_(True)
        target = torch.softmax(x.detach(), 1) if spec.dense_labels else t_labels
        segmentation_loss(x, target, name).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name


def test_errors(batch):
    logits, labels, weights = batch
    t_logits, t_labels, t_weights = torch_inputs(logits, labels, weights)
    with pytest.raises(TrainingError, match="unknown loss_type 'dice'; did you mean 'Dice'"):
        segmentation_loss(t_logits, t_labels, "dice")
    with pytest.raises(TrainingError, match=r"labels must be integers in \[0, 4\)"):
        segmentation_loss(t_logits, t_labels + 2, "Dice")
    with pytest.raises(TrainingError, match="at most 5 classes"):
        segmentation_loss(torch.zeros(1, 6, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long), "WGDL")
    with pytest.raises(TrainingError, match="no weight map"):
        segmentation_loss(t_logits, torch.softmax(t_logits, 1), "Dice_Dense", weight_map=t_weights)
    with pytest.raises(TrainingError, match="do not match"):
        segmentation_loss(t_logits, t_labels[:, :, :2], "Dice")
