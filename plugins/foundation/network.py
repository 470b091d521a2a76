"""The module kdbench trains for a foundation model: the pretrained network behind kdbench's
channel and region orders, with the deep-supervision switch nnU-Net's trainer toggles."""

from __future__ import annotations

import functools
from typing import Any

from kdbench import KdbenchError


@functools.cache
def classes() -> tuple[type, type]:
    """The torch modules, defined on first use (torch is not imported with the plugin)."""
    from torch import nn

    class DeepSupervisionSwitch(nn.Module):
        """The flag nnU-Net's trainer toggles (``module.decoder.deep_supervision``)."""

        def __init__(self) -> None:
            super().__init__()
            self.deep_supervision = True

    class FoundationNetwork(nn.Module):
        """A pretrained network behind kdbench's channel order and region order.

        ``forward(x)``: ``x`` holds the Job's channels in kdbench's order; they are permuted
        to the checkpoint's ``channel_order``, its outputs to WT, TC, ET. With deep supervision
        on (nnU-Net's training) the logits come as a one-element list (nnU-Net's loss then uses
        the full resolution only); with it off (inference), as a tensor.
        """

        def __init__(self, network: nn.Module, input_index: list[int],
                     output_index: list[int]) -> None:
            super().__init__()
            self.network = network
            self.decoder = DeepSupervisionSwitch()
            self.input_index = list(input_index)
            self.output_index = list(output_index)

        def forward(self, x: Any) -> Any:
            if self.input_index != list(range(x.shape[1])):
                x = x[:, self.input_index]
            out = self.network(x)
            if isinstance(out, list | tuple):  # a network with its own deep supervision
                out = out[0]
            if out.shape[1] != len(self.output_index):
                raise KdbenchError(
                    f"foundation teacher: the network returns {out.shape[1]} channels, "
                    f"output_order names {len(self.output_index)}")
            if self.output_index != list(range(len(self.output_index))):
                out = out[:, self.output_index]
            return [out] if self.decoder.deep_supervision else out

    return DeepSupervisionSwitch, FoundationNetwork
