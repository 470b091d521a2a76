"""Hetero-modal networks from nnU-Net's building blocks: one encoder per modality, fused skips.

Each modality gets its own encoder, the backbone's (``context.network(1).encoder``: nnU-Net's
PlainConvEncoder or ResidualEncoder with the plans' stages, features, kernels and strides).
The skips of every scale are fused over the modalities present, and a decoder built by nnU-Net's
``UNetDecoder`` for the fused widths (the plans' kernels, strides, normalisation and convolutions
per stage, deep-supervision heads, nnU-Net's He initialisation) maps them to the region logits.

* :class:`HeMISNet` fuses by mean and variance (2C channels per scale).
* :class:`UHVEDNet` maps each encoder's C channels by a linear 1x1x1 convolution to a Gaussian
  (C/2 means, C/2 log-variances), fuses by a product of Gaussians with a standard-normal prior,
  samples in training and takes the mean in eval mode; a second decoder reconstructs every
  modality.

In training mode each sample draws its own subset of modalities (modality dropout); in eval mode
the modalities are the ones given (``present``), all by default. ``forward(x, present)``: ``x``
holds the channels of ``present`` in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from kdbench_plugins.hetero_modal.fusion import draw_subsets, mean_variance, product_of_gaussians


def build_decoder(encoder: Any, channels: Sequence[int], num_classes: int,
                  n_conv_per_stage: Sequence[int], deep_supervision: bool) -> nn.Module:
    """nnU-Net's ``UNetDecoder`` for skips of ``channels`` per scale, otherwise as ``encoder``."""
    from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    # a plain description, not the module: the decoder keeps it as an attribute
    view = SimpleNamespace(
        output_channels=list(channels), strides=encoder.strides,
        kernel_sizes=encoder.kernel_sizes, conv_op=encoder.conv_op,
        conv_bias=encoder.conv_bias, norm_op=encoder.norm_op,
        norm_op_kwargs=encoder.norm_op_kwargs, dropout_op=encoder.dropout_op,
        dropout_op_kwargs=encoder.dropout_op_kwargs, nonlin=encoder.nonlin,
        nonlin_kwargs=encoder.nonlin_kwargs,
    )
    decoder = UNetDecoder(view, num_classes, list(n_conv_per_stage), deep_supervision)
    decoder.apply(InitWeights_He(1e-2))
    return decoder


class HeteroModalNet(nn.Module):
    """One backbone encoder per modality and the presence mask of a batch."""

    def __init__(self, context: Any, modalities: Sequence[str]) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        templates = [context.network(1) for _ in self.modalities]
        self.encoders = nn.ModuleList(t.encoder for t in templates)
        self.encoder_channels = [int(c) for c in self.encoders[0].output_channels]
        self.decoder_convs = [len(stage.convs) for stage in templates[0].decoder.stages]
        self.num_outputs = context.num_outputs

    def presence(self, batch: int, present: Sequence[int] | None, device: Any) -> torch.Tensor:
        """``(M, B)`` mask: drawn per sample in training, else the given modalities."""
        m = len(self.modalities)
        if present is None and self.training:
            return draw_subsets(batch, m, device=device)
        indices = range(m) if present is None else present
        if not indices or any(not 0 <= i < m for i in indices):
            raise ValueError(f"present must name modalities 0..{m - 1}, got {present}")
        mask = torch.zeros(m, batch, dtype=torch.bool, device=device)
        mask[list(indices)] = True
        return mask

    def encode(self, x: torch.Tensor, present: Sequence[int] | None,
               needed: Sequence[int]) -> list[list[torch.Tensor] | None]:
        """Skips of each modality in ``needed`` (None for the others)."""
        order = list(range(len(self.modalities))) if present is None else list(present)
        skips: list[list[torch.Tensor] | None] = [None] * len(self.modalities)
        for m in needed:
            channel = order.index(m)
            skips[m] = self.encoders[m](x[:, channel:channel + 1])
        return skips

    @staticmethod
    def stacked(skips: list[list[torch.Tensor] | None], scale: int) -> torch.Tensor:
        """``(M, B, C, *spatial)`` features of one scale, zeros for modalities not computed."""
        reference = next(s for s in skips if s is not None)[scale]
        return torch.stack([s[scale] if s is not None else torch.zeros_like(reference)
                            for s in skips])


class HeMISNet(HeteroModalNet):
    """U-HeMIS on nnU-Net blocks: mean and variance over the present modalities at every skip."""

    def __init__(self, context: Any, modalities: Sequence[str]) -> None:
        super().__init__(context, modalities)
        self.decoder = build_decoder(self.encoders[0], [2 * c for c in self.encoder_channels],
                                     self.num_outputs, self.decoder_convs, True)

    def forward(self, x: torch.Tensor, present: Sequence[int] | None = None) -> Any:
        mask = self.presence(x.shape[0], present, x.device)
        needed = [m for m in range(len(self.modalities)) if bool(mask[m].any())]
        skips = self.encode(x, present, needed)
        fused = [mean_variance(self.stacked(skips, s), mask).to(x.dtype)
                 for s in range(len(self.encoder_channels))]
        return self.decoder(fused)


@dataclass
class HVEDOutput:
    """What :class:`UHVEDNet` returns in training mode (in eval mode: the segmentation only).

    Attributes:
        segmentation: the region logits (deep-supervision list).
        reconstruction: every modality reconstructed from the sampled latents, ``(B, M, ...)``.
        posteriors: per scale, ``(mu, logvar)`` of every modality, each ``(M, B, C/2, ...)``.
        mask: the ``(M, B)`` presence mask the fusion used.
    """

    segmentation: Any
    reconstruction: torch.Tensor
    posteriors: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor


class UHVEDNet(HeteroModalNet):
    """U-HVED on nnU-Net blocks (Dorent et al., MICCAI 2019)."""

    def __init__(self, context: Any, modalities: Sequence[str]) -> None:
        super().__init__(context, modalities)
        odd = [c for c in self.encoder_channels if c % 2]
        if odd:
            raise ValueError(f"U-HVED splits each encoder stage's features into means and "
                             f"log-variances: they must be even, got {self.encoder_channels}")
        latent = [c // 2 for c in self.encoder_channels]
        # nnU-Net's stages end in a nonlinearity (features >= -0.01 x): a linear 1x1x1
        # convolution per modality and scale gives unconstrained means and log-variances (the
        # reference's blocks end in a convolution)
        conv = self.encoders[0].conv_op
        self.gaussian_heads = nn.ModuleList(
            nn.ModuleList(conv(c, c, 1) for c in self.encoder_channels)
            for _ in self.modalities)
        self.decoder = build_decoder(self.encoders[0], latent, self.num_outputs,
                                     self.decoder_convs, True)
        self.reconstruction = build_decoder(self.encoders[0], latent, len(self.modalities),
                                            self.decoder_convs, False)

    def forward(self, x: torch.Tensor, present: Sequence[int] | None = None) -> Any:
        mask = self.presence(x.shape[0], present, x.device)
        # training: every modality is encoded (the KL terms compare all 15 sub-posteriors)
        needed = (range(len(self.modalities)) if self.training
                  else [m for m in range(len(self.modalities)) if bool(mask[m].any())])
        skips = self.encode(x, present, needed)
        skips = [None if s is None else [head(f) for head, f in zip(heads, s, strict=True)]
                 for heads, s in zip(self.gaussian_heads, skips, strict=True)]
        posteriors, latents = [], []
        for scale, channels in enumerate(self.encoder_channels):
            stacked = self.stacked(skips, scale)
            mu, logvar = stacked[:, :, :channels // 2], stacked[:, :, channels // 2:]
            fused_mu, fused_logvar = product_of_gaussians(mu, logvar, mask)
            if self.training:
                noise = torch.randn_like(fused_mu)
                latents.append((fused_mu + torch.exp(0.5 * fused_logvar) * noise).to(x.dtype))
            else:
                latents.append(fused_mu.to(x.dtype))
            posteriors.append((mu, logvar))
        segmentation = self.decoder(latents)
        if not self.training:
            return segmentation
        return HVEDOutput(segmentation, self.reconstruction(latents), posteriors, mask)


class SubsetView(nn.Module):
    """A hetero-modal model seen through one subset: ``forward(x)`` with x holding the channels
    of ``present`` (indices into the model's modalities), as the backbone's inference calls it."""

    def __init__(self, model: HeteroModalNet, present: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.present = tuple(present)

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x, self.present)
