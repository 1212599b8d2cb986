"""Objectives: hand-computed InfoNCE, PCMC = CLIP for two modalities, masks, PCMR."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal.align.losses import ClipLoss, PCMCLoss, PCMRLoss, symmetric_info_nce


def test_info_nce_matches_a_hand_computed_batch():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(math.log(2.0))  # logits = 2 * a b^T = [[2, 1.2], [0, 1.6]]
    # rows a->b: -log softmax: row0 = -log(e^2/(e^2+e^1.2)), row1 = -log(e^1.6/(e^0+e^1.6))
    a_to_b = (
        -math.log(math.exp(2) / (math.exp(2) + math.exp(1.2))) - math.log(math.exp(1.6) / (1 + math.exp(1.6)))
    ) / 2
    # columns b->a: logits^T = [[2, 0], [1.2, 1.6]]
    b_to_a = (
        -math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))
    ) / 2
    assert symmetric_info_nce(a, b, scale).item() == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-6)


def test_pcmc_with_two_modalities_is_the_clip_loss():
    torch.manual_seed(0)
    text, image = F.normalize(torch.randn(16, 8), dim=1), F.normalize(torch.randn(16, 8), dim=1)
    scale = torch.tensor(2.5)
    clip = ClipLoss()(text, image, scale)
    assert PCMCLoss()({"text": text, "image": image}, scale).item() == pytest.approx(clip.item(), rel=1e-7)


def test_pcmc_sums_every_pair_and_masks_absent_items():
    torch.manual_seed(1)
    f = {m: F.normalize(torch.randn(10, 4), dim=1) for m in ("image", "en", "de")}
    scale = torch.tensor(1.0)
    pairs = [("image", "en"), ("image", "de"), ("en", "de")]
    expected = sum(symmetric_info_nce(f[x], f[y], scale) for x, y in pairs)
    assert PCMCLoss()(f, scale).item() == pytest.approx(expected.item(), rel=1e-6)

    present = {"de": torch.tensor([True] * 6 + [False] * 4)}
    masked = PCMCLoss()(f, scale, present)
    rows = present["de"]
    expected = (
        symmetric_info_nce(f["image"], f["en"], scale)
        + symmetric_info_nce(f["image"][rows], f["de"][rows], scale)
        + symmetric_info_nce(f["en"][rows], f["de"][rows], scale)
    )
    assert masked.item() == pytest.approx(expected.item(), rel=1e-6)
    # a modality absent everywhere contributes nothing
    gone = PCMCLoss()(f, scale, {"de": torch.zeros(10, dtype=torch.bool)})
    assert gone.item() == pytest.approx(symmetric_info_nce(f["image"], f["en"], scale).item(), rel=1e-6)


def test_pcmr_is_zero_at_its_target_and_its_gradient_points_the_right_way():
    eye = torch.eye(4)
    assert PCMRLoss(negative_target=0.0)({"a": eye, "b": eye}).item() == 0.0
    # With b = I the similarity matrix is a itself, so a.grad = dLoss/dS.
    sims = torch.tensor([[0.5, 0.3], [-0.2, 0.9]], requires_grad=True)
    PCMRLoss(negative_target=0.0)({"a": sims, "b": torch.eye(2)}).backward()
    grad = sims.grad
    assert grad[0, 0] < 0 and grad[1, 1] < 0  # descent raises matching similarities toward 1
    assert grad[0, 1] > 0  # and lowers a non-match above the target
    assert grad[1, 0] == 0  # a non-match already below the target is left alone
    assert grad[0, 0].item() == pytest.approx(2 * (0.5 - 1) / 2)  # diagonal mean: 2 matches
    a = F.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0]]), dim=1)
    b = F.normalize(torch.tensor([[0.8, 0.6], [0.6, 0.8]]), dim=1)
    # non-matches already below the target are not pushed further
    low = PCMRLoss(negative_target=0.99)({"a": a, "b": b})
    diag_only = ((torch.diagonal(a @ b.T) - 1) ** 2).mean()
    assert low.item() == pytest.approx(diag_only.item(), rel=1e-6)


def test_info_nce_rejects_unpaired_batches():
    with pytest.raises(ValueError, match="paired features need the same shape"):
        symmetric_info_nce(torch.zeros(3, 2), torch.zeros(4, 2), torch.tensor(0.0))
