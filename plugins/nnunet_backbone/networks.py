"""Networks from nnU-Net's plans, for any input and output channels (one builder for the
trainer and for loading finished models)."""

from __future__ import annotations

from typing import Any

import torch


def network_builder(manager: Any, config: Any, num_heads: int, device: torch.device | str
                    ) -> Any:
    """``network(in_channels, deep_supervision=True, out_channels=None, dropout=0.0)``: the
    planned network (nnU-Net's ``get_network_from_plans``) for any number of input and output
    channels (default: the segmentation heads), with channel dropout in every convolution block
    when ``dropout`` > 0 (nnU-Net's plans have none)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    def network(in_channels: int, deep_supervision: bool = True, out_channels: int | None = None,
                dropout: float = 0.0) -> torch.nn.Module:
        kwargs = dict(config.network_arch_init_kwargs)
        imports = list(config.network_arch_init_kwargs_req_import)
        if dropout > 0:
            kwargs["dropout_op"] = "torch.nn.Dropout3d" if len(config.patch_size) == 3 \
                else "torch.nn.Dropout2d"
            kwargs["dropout_op_kwargs"] = {"p": float(dropout), "inplace": False}
            imports = [*dict.fromkeys([*imports, "dropout_op"])]
        return get_network_from_plans(
            config.network_arch_class_name, kwargs, imports, in_channels,
            num_heads if out_channels is None else out_channels, allow_init=True,
            deep_supervision=deep_supervision).to(device)

    return network
