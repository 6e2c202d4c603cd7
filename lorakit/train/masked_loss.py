"""The per-image loss, optionally weighted by a loss mask (data.masked_loss; the masks come from dataset/masks.py).

    loss = per_image_loss(pred, target, masks)     # (B,) ; masks (B, 1, h, w) in [0, 1], or None

Normalisation: each image's squared error is averaged over its mask's weight, sum(mask × err²) / sum(mask)
(per channel), not over all pixels. So an all-white mask trains exactly as no mask, a small subject is learnt as
fast as a large one, and an all-black mask contributes nothing (0, not 0/0). sd-scripts' ``apply_masked_loss``
instead multiplies by the mask and averages over every pixel, which shrinks an image's loss (and its effective
learning rate) by the share it masks out. Masked pixels get a gradient of exactly zero either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_image_loss(pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """MSE per image, (B,); with ``masks`` the mean over the masked-in (weighted) latent pixels only."""
    err = F.mse_loss(pred.float(), target.float(), reduction="none")
    if masks is None:
        return err.mean(dim=(1, 2, 3))
    masks = masks.to(err.device, err.dtype)
    weight = masks.sum(dim=(1, 2, 3)) * err.shape[1]  # the mask is shared by the latent channels
    return (err * masks).sum(dim=(1, 2, 3)) / weight.clamp_min(1e-8)
