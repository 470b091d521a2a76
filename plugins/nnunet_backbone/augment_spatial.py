"""The spatial steps of the GPU augmentation (:mod:`.gpu_augment`) on a batch: rotation and
scaling about the centre of nnU-Net's initial patch (or an integer centre crop), with
batchgeneratorsv2's affine matrices, grids and label-score resampling; and mirroring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdbench_plugins.nnunet_backbone.augment_draw import AugmentationDraw

#: nnU-Net's padding label of the segmentation in the spatial transform.
SEG_PADDING = -1


def affine(draw: AugmentationDraw, dummy_2d: bool) -> torch.Tensor:
    """(B, 3, 3) matrices ``Rz @ Ry @ Rx @ S`` (batchgeneratorsv2's
    ``create_affine_matrix_3d``; in dummy 2D the in-plane rotation and scaling of
    ``create_affine_matrix_2d`` on axes 1, 2)."""
    a = draw.angles
    cos, sin = torch.cos(a), torch.sin(a)
    b = a.shape[0]
    one, zero = torch.ones(b, dtype=a.dtype), torch.zeros(b, dtype=a.dtype)

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    if dummy_2d:
        c2, s2 = cos[:, 2], sin[:, 2]
        rotation = mat([[one, zero, zero], [zero, c2, -s2], [zero, s2, c2]])
        diag = torch.stack([one, draw.scale_factor, draw.scale_factor], -1)
    else:
        rx = mat([[one, zero, zero], [zero, cos[:, 0], -sin[:, 0]],
                  [zero, sin[:, 0], cos[:, 0]]])
        ry = mat([[cos[:, 1], zero, sin[:, 1]], [zero, one, zero],
                  [-sin[:, 1], zero, cos[:, 1]]])
        rz = mat([[cos[:, 2], -sin[:, 2], zero], [sin[:, 2], cos[:, 2], zero],
                  [zero, zero, one]])
        rotation = rz @ ry @ rx
        diag = draw.scale_factor[:, None].expand(b, 3)
    return rotation @ torch.diag_embed(diag)


def grid(affine: torch.Tensor, patch_size: Sequence[int], shape: Sequence[int],
         device: torch.device) -> torch.Tensor:
    """``grid_sample`` grids (n, *patch, 3) of the patch centred in ``shape``, mapped by
    ``affine`` (batchgeneratorsv2's centred identity grid, ``grid @ affine.T``, then
    ``_convert_my_grid_to_grid_sample_grid``)."""
    axes = [torch.linspace((1 - p) / 2, (p - 1) / 2, p, device=device) for p in patch_size]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    grid = torch.einsum("xyzj,nkj->nxyzk", base, affine.to(device, torch.float32))
    half = torch.tensor([s / 2 for s in shape], device=device, dtype=torch.float32)
    return (grid / half).flip(-1)


def spatial(data: torch.Tensor, seg: torch.Tensor, draw: AugmentationDraw,
            patch_size: Sequence[int], dummy_2d: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation and scaling about the centre of the initial patch, or an integer centre
    crop for samples with neither."""
    shape = data.shape[2:]
    patch = tuple(patch_size)
    starts = [math.floor(s / 2) - p // 2 for s, p in zip(shape, patch, strict=True)]
    if any(s < 0 or s + p > n for s, p, n in zip(starts, patch, shape, strict=True)):
        raise ValueError(f"initial patch {tuple(shape)} is smaller than the patch {patch}")
    crop = (slice(None), slice(None)) + tuple(slice(s, s + p) for s, p in zip(starts, patch,
                                                                           strict=True))
    out_data = data[crop].clone()
    out_seg = seg[crop].clone()
    moved = torch.nonzero(draw.rotate | draw.scale).flatten()
    if moved.numel() == 0:
        return out_data, out_seg
    idx = moved.to(data.device)
    sampling = grid(affine(draw, dummy_2d)[moved], patch, shape, data.device)
    out_data[idx] = F.grid_sample(data[idx], sampling, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)
    out_seg[idx] = resample_seg(seg[idx], sampling)
    return out_data, out_seg


def resample_seg(seg: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """batchgeneratorsv2's label-score resampling (``mode_seg='bilinear'``,
    ``border_mode_seg='constant'``, padding -1, ties to the nearest neighbour): each label's
    indicator sampled trilinearly, in float16 at scale 1000, the top score wins."""
    labels = torch.unique(torch.cat([seg.flatten(), seg.new_tensor([SEG_PADDING])]))
    scale = 1000.0
    onehot = (seg == labels.view(1, -1, 1, 1, 1)).float()  # (n, K, ...)
    pad = int((labels == SEG_PADDING).nonzero()[0, 0])
    onehot[:, pad] -= 1  # the padding label is 1 outside: sample (indicator - 1), add 1
    scores = F.grid_sample(onehot.mul_(scale), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    scores[:, pad] += scale
    scores = scores.half()
    best, winner = scores.max(1)
    nearest = F.grid_sample(seg.float() - SEG_PADDING, grid, mode="nearest",
                            padding_mode="zeros", align_corners=False)[:, 0] + SEG_PADDING
    nearest = nearest.round().to(seg.dtype)
    own = scores.gather(1, torch.searchsorted(labels, nearest)[:, None])[:, 0]
    result = torch.where(own == best, nearest, labels[winner])
    return result[:, None].to(seg.dtype)


def mirror(data: torch.Tensor, seg: torch.Tensor, draw: AugmentationDraw
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample along its drawn axes."""
    for i in range(data.shape[0]):
        axes = [2 + a for a in range(3) if bool(draw.mirror[i, a])]
        if axes:
            data[i] = torch.flip(data[i:i + 1], axes)[0]
            seg[i] = torch.flip(seg[i:i + 1], axes)[0]
    return data, seg
