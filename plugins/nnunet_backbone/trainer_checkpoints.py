"""The trainer's checkpoints: nnU-Net 2.8's entries plus the random states, written atomically
and read back without unpickling code, so that a Job killed mid-training resumes to the same
final state as an uninterrupted run.

:class:`ResumableCheckpoints` is mixed into :class:`.trainer.KdbenchTrainer` (an
``nnUNetTrainer``), whose attributes its methods use; the files themselves are
:mod:`.checkpoint`.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from kdbench_plugins.nnunet_backbone.checkpoint import load_checkpoint_file, save_checkpoint_file


class ResumableCheckpoints:
    """nnU-Net's ``save_checkpoint`` and ``load_checkpoint``, replaced for an
    ``nnUNetTrainer`` subclass (see the module docstring)."""

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint (the same entries as nnU-Net 2.8's ``save_checkpoint``) plus
        the random states, written atomically (:func:`.checkpoint.save_checkpoint_file`: a
        crash never leaves a truncated checkpoint under the real name; a full disk or a
        read-only folder raises one message naming the file, the previous one intact)."""
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        from torch._dynamo import OptimizedModule

        module = self.network.module if self.is_ddp else self.network
        if isinstance(module, OptimizedModule):
            module = module._orig_mod
        save_checkpoint_file({
            "network_weights": module.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": (self.grad_scaler.state_dict()
                                  if self.grad_scaler is not None else None),
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            "kdbench_rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }, filename)

    def load_checkpoint(self, filename_or_checkpoint: str | dict) -> None:  # type: ignore[override]
        """The state nnU-Net 2.8's ``load_checkpoint`` sets, from a checkpoint read with
        ``weights_only=True`` (:func:`.checkpoint.load_checkpoint_file`: nothing but tensors,
        numbers and numpy arrays is unpickled; nnU-Net's own loader unpickles anything). The
        random states are restored once training restarts: after :meth:`on_train_start`,
        whose data-loader start-up draws random numbers in a resumed run as it did at the
        start of the uninterrupted one.
        """
        if not self.was_initialized:
            self.initialize()
        checkpoint = (filename_or_checkpoint if isinstance(filename_or_checkpoint, dict)
                      else load_checkpoint_file(filename_or_checkpoint, self.device))
        from torch._dynamo import OptimizedModule

        module = self.network.module if self.is_ddp else self.network
        if isinstance(module, OptimizedModule):
            module = module._orig_mod
        own = module.state_dict().keys()
        weights = {(k[7:] if k not in own and k.startswith("module.") else k): v
                   for k, v in checkpoint["network_weights"].items()}  # saved from DDP
        self.my_init_kwargs = checkpoint["init_args"]
        self.current_epoch = checkpoint["current_epoch"]
        self.logger.load_checkpoint(checkpoint["logging"])
        self._best_ema = checkpoint["_best_ema"]
        self.inference_allowed_mirroring_axes = checkpoint.get(
            "inference_allowed_mirroring_axes", self.inference_allowed_mirroring_axes)
        module.load_state_dict(weights)
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        if self.grad_scaler is not None and checkpoint["grad_scaler_state"] is not None:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])
        self._pending_rng = checkpoint.get("kdbench_rng")

    def _restore_rng(self) -> None:
        rng = getattr(self, "_pending_rng", None)
        if not rng:
            return
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"].cpu())  # the checkpoint was read onto the device
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
        self._pending_rng = None
