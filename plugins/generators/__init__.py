"""Generators of missing modalities: a conditional 3D U-Net from nnU-Net's planned blocks.

``unet_generator`` learns, on the (N, seed) training subset, to synthesise every missing
training modality from the available ones (one Job per available subset, shared by every
strategy that needs it). Its loss on a batch, on nnU-Net's preprocessed (z-scored) patches:

    L1(G(x_a), x_m)
    + ssim_weight * (1 - SSIM(G(x_a), x_m))                           (MONAI's SSIMLoss)
    + adversarial_weight * BCE(D(x_a, G(x_a)), real)                  (pix2pix's cGAN term)

with ``D`` a conditional 3D PatchGAN (MONAI's ``PatchDiscriminator``) updated on every batch by
its own Adam (lr 2e-4, betas 0.5/0.999, as pix2pix) on BCE(D(x_a, x_m), real) +
BCE(D(x_a, G(x_a)), fake), halved. Channel dropout in every convolution block (``dropout``)
makes it stochastic, as pix2pix's generator: :meth:`UNetGenerator.sample` keeps dropout on to
draw several completions; :meth:`UNetGenerator.synthesise` (the point estimate) turns it off.
Details and defaults: docs/genkd.md.
"""

from __future__ import annotations

from typing import Any

from kdbench import BuildContext, Generator, HParams, Strategy, TrainingStep, hookimpl, hparam


class UNetGeneratorParams(HParams):
    """``unet_generator``'s hyper-parameters."""

    ssim_weight: float = hparam(
        0.0,
        low=0.0,
        high=1.0,
        help="weight of the 1 - SSIM term (11-voxel Gaussian window, σ 1.5)",
        source="kdbench choice: off by default (the optional SSIM term; SSIM is the BraTS "
        "2023 synthesis challenge's image score)",
    )
    adversarial_weight: float = hparam(
        0.0,
        low=0.0,
        high=0.1,
        help="weight of the conditional PatchGAN term relative to L1 (0: no discriminator)",
        source="pix2pix (Isola et al., CVPR 2017): lambda_L1 = 100 for a cGAN weight of 1, "
        "i.e. 0.01 relative to L1; off by default",
    )
    dropout: float = hparam(
        0.1,
        low=0.0,
        high=0.5,
        help="channel-dropout probability in every convolution block, kept on when sampling",
        source="pix2pix: dropout is the generator's noise, at training and test time; "
        "p = 0.1 here (kdbench choice: every block, not pix2pix's 0.5 in 3 decoder blocks)",
    )
    discriminator_lr: float = hparam(
        2e-4,
        low=1e-5,
        high=1e-3,
        log=True,
        help="Adam learning rate of the discriminator",
        source="pix2pix: Adam, lr 2e-4, beta1 0.5",
    )


class UNetGenerator(Strategy, Generator):
    """Conditional 3D U-Net (nnU-Net blocks): L1 (+ SSIM, + PatchGAN), dropout for samples."""

    name = "unet_generator"
    version = "1"
    Params = UNetGeneratorParams

    # -- building -------------------------------------------------------------------------------

    def build(self, context: BuildContext) -> Any:
        """The U-Net (available -> missing channels) and, with an adversarial term, a
        discriminator; keeps the scoring segmenter (the teacher) for :meth:`inference_model`."""
        from kdbench_plugins.generators.networks import GeneratorModel, patch_layers

        net = context.network(len(self.available), deep_supervision=False,
                              out_channels=len(self.missing), dropout=self.hparams["dropout"])
        discriminator = None
        if self.hparams["adversarial_weight"] > 0:
            from monai.networks.nets import PatchDiscriminator

            discriminator = PatchDiscriminator(
                spatial_dims=len(context.patch_size) or 3, channels=32,
                in_channels=len(self.modalities.training), out_channels=1,
                num_layers_d=patch_layers(context.patch_size), norm="INSTANCE",
            ).to(context.device)
        self._segmenter = context.teacher
        self._d_optimizer = None
        return GeneratorModel(net, discriminator)

    # -- what consumers call --------------------------------------------------------------------

    def synthesise(self, model: Any, inputs: Any) -> Any:
        """The point estimate: the U-Net in eval mode (no dropout)."""
        from kdbench_plugins.generators.networks import full_resolution

        was_training = model.training
        model.eval()
        try:
            return full_resolution(model(inputs))
        finally:
            model.train(was_training)

    @classmethod
    def can_sample(cls, hparams: Any) -> bool:
        """Dropout is this generator's only noise (pix2pix's, no noise input; the adversarial
        term adds none): it samples only when ``dropout > 0``."""
        return float(hparams["dropout"]) > 0

    def sample(self, model: Any, inputs: Any, samples: int) -> list[Any]:
        """``samples`` draws with dropout on (the rest of the network in eval mode)."""
        import torch

        from kdbench_plugins.generators.networks import full_resolution

        dropouts = [m for m in model.modules()
                    if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        was_training = model.training
        model.eval()
        for module in dropouts:
            module.train()
        try:
            return [full_resolution(model(inputs)) for _ in range(samples)]
        finally:
            model.train(was_training)

    def inference_model(self, model: Any, available: tuple[str, ...]) -> Any:
        """For the generator's own scoring: the frozen segmenter fed completed input."""
        from kdbench_plugins.generators.networks import SynthesiseThenSegment

        if self._segmenter is None:
            raise RuntimeError("the generator's scoring segmenter was not loaded")
        return SynthesiseThenSegment(self, model, self._segmenter).eval()

    # -- training -------------------------------------------------------------------------------

    def training_loss(self, step: TrainingStep) -> dict[str, Any]:
        """L1 (+ SSIM, + adversarial) against the real missing channels."""
        from kdbench_plugins.generators.networks import full_resolution

        batch = step.batch
        fake = full_resolution(step.outputs).float()
        real = batch.select(self.missing).float()
        terms = self._reconstruction(fake, real)
        loss = terms["l1"]
        if self.hparams["ssim_weight"] > 0:
            loss = loss + self.hparams["ssim_weight"] * terms["ssim"]
        if self.hparams["adversarial_weight"] > 0:
            discriminator = step.model.discriminator
            terms["discriminator"] = self._update_discriminator(discriminator, batch.inputs,
                                                                fake, real)
            terms["adversarial"] = self._adversarial(discriminator, batch.inputs, fake)
            loss = loss + self.hparams["adversarial_weight"] * terms["adversarial"]
        terms["loss"] = loss
        return terms

    def validation_terms(self, step: TrainingStep) -> dict[str, Any]:
        """L1 of the point estimate on validation patches."""
        from kdbench_plugins.generators.networks import full_resolution

        terms = self._reconstruction(full_resolution(step.outputs).float(),
                                     step.batch.select(self.missing).float())
        return {"loss": terms["l1"], **terms}

    def _reconstruction(self, fake: Any, real: Any) -> dict[str, Any]:
        import torch.nn.functional as F

        terms = {"l1": F.l1_loss(fake, real)}
        if self.hparams["ssim_weight"] > 0:
            terms["ssim"] = ssim_loss(fake, real)
        return terms

    def _adversarial(self, discriminator: Any, inputs: Any, fake: Any) -> Any:
        from monai.losses import PatchAdversarialLoss

        criterion = PatchAdversarialLoss(criterion="bce")
        return criterion(discriminator(self.complete(inputs, fake))[-1], target_is_real=True,
                         for_discriminator=False)

    def _update_discriminator(self, discriminator: Any, inputs: Any, fake: Any, real: Any
                              ) -> Any:
        """One Adam step of the discriminator on (real, fake.detach()); returns its loss."""
        import torch
        from monai.losses import PatchAdversarialLoss

        if self._d_optimizer is None:
            self._d_optimizer = torch.optim.Adam(discriminator.parameters(),
                                                 lr=self.hparams["discriminator_lr"],
                                                 betas=(0.5, 0.999))
        criterion = PatchAdversarialLoss(criterion="bce")
        discriminator.requires_grad_(True)
        try:
            with torch.enable_grad():
                real_score = discriminator(self.complete(inputs, real))[-1].float()
                fake_score = discriminator(self.complete(inputs, fake.detach()))[-1].float()
                loss = 0.5 * (criterion(real_score, target_is_real=True, for_discriminator=True)
                              + criterion(fake_score, target_is_real=False,
                                          for_discriminator=True))
                self._d_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._d_optimizer.step()
                # no gradient left behind: the backbone's optimizer also holds these parameters
                self._d_optimizer.zero_grad(set_to_none=True)
        finally:
            discriminator.requires_grad_(False)
        return loss.detach()


def ssim_loss(fake: Any, real: Any) -> Any:
    """1 - SSIM (MONAI's SSIMLoss: 11-voxel Gaussian window, σ 1.5) with the batch's real
    intensity range as the data range (z-scored intensities have no fixed range)."""
    from monai.losses import SSIMLoss

    data_range = float((real.max() - real.min()).clamp_min(1e-6))
    return SSIMLoss(spatial_dims=real.ndim - 2, data_range=data_range)(fake, real)


@hookimpl
def kdbench_register_generators(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``unet_generator``."""
    registry.add(UNetGenerator)
