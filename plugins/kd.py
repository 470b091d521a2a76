"""The ``kd`` strategy: generalized distillation from a multi-modal teacher.

Generalized distillation (Lopez-Paz et al., ICLR 2016) applied to multi-modal to mono-modal
segmentation as in KD-Net (Hu et al., MICCAI 2020): a teacher trained on every modality of the
same (N, seed) training subset, a student on the available ones.
"""

from __future__ import annotations

from kdbench import HParam, Strategy, hookimpl


class KnowledgeDistillation(Strategy):
    """Student on the available modalities, distilled from a multi-modal teacher."""

    name = "kd"
    version = "1"
    requires = ("teacher",)
    default_teacher = "multi"
    hparams = {
        "kd_weight": HParam(
            10.0,
            low=0.1,
            high=20.0,
            log=True,
            help="weight of the T^2-scaled KL term between tempered outputs",
            source="ProtoKD (SakurajimaMaiii/ProtoKD): weight 10",
        ),
        "temperature": HParam(
            10.0,
            low=1.0,
            high=20.0,
            log=True,
            help="softening temperature of teacher and student outputs",
            source="ProtoKD (SakurajimaMaiii/ProtoKD) and PMKL (cchen-cc/PMKL): T = 10",
        ),
        "latent_weight": HParam(
            0.0,
            low=0.0,
            high=1.0,
            help="weight of the bottleneck-feature term (KD-Net's latent term); 0 disables it",
            source="kdbench choice: off by default, as an ablation",
        ),
        "latent_loss": HParam(
            "mse",
            choices=("mse", "kl"),
            help="distance between student and teacher bottleneck features",
            source="KD-Net (Hu et al., MICCAI 2020)",
        ),
    }


@hookimpl
def kdbench_register_strategies(registry) -> None:  # noqa: ANN001 - a CategoryRegistry
    """Register ``kd``."""
    registry.add(KnowledgeDistillation)
