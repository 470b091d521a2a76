"""Fusion of per-modality feature maps over the modalities present, and the U-HVED KL terms.

Every function takes the features of all M modalities stacked on a leading axis,
``(M, B, C, *spatial)``, and a presence mask ``(M, B)`` (1 where modality m is present in
sample b), so that each sample of a batch may have its own subset (modality dropout). Fusion is
computed in float32 whatever the autocast state: precisions ``exp(-logvar)`` overflow half
precision.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

#: log-variances are clipped to this range before exponentiation (as U-HVED's encoder does).
LOGVAR_CLIP = 50.0


def _weights(mask: Any, like: Any) -> Any:
    """The ``(M, B)`` mask broadcast against ``(M, B, C, *spatial)`` features, float32."""
    return mask.float().reshape(*mask.shape, *([1] * (like.dim() - 2)))


def mean_variance(features: Any, mask: Any) -> Any:
    """HeMIS fusion: the mean and the (population) variance over the present modalities,
    concatenated on the channel axis, ``(B, 2C, *spatial)``. One modality: variance 0."""
    import torch

    with torch.autocast(features.device.type, enabled=False):
        f = features.float()
        w = _weights(mask, f)
        count = w.sum(0)  # >= 1: the networks check every sample has a modality
        mean = (w * f).sum(0) / count
        variance = (w * (f - mean) ** 2).sum(0) / count
        return torch.cat([mean, variance], dim=1)


def _experts(mu: Any, logvar: Any) -> tuple[Any, Any]:
    """Each modality's precision ``1/var`` (log-variance clipped) and ``mu/var``, float32."""
    import torch

    precision = torch.exp(-logvar.float().clamp(-LOGVAR_CLIP, LOGVAR_CLIP))
    return precision, precision * mu.float()


def _product(precision_m: Any, weighted_m: Any, weights: Any, prior: bool) -> tuple[Any, Any]:
    """``(mu, logvar)`` of the product of the experts weighted by ``weights`` (0/1)."""
    import torch

    precision = (weights * precision_m).sum(0)
    if prior:
        precision = precision + 1.0
    return (weights * weighted_m).sum(0) / precision, -torch.log(precision)


def product_of_gaussians(mu: Any, logvar: Any, mask: Any, prior: bool = True
                         ) -> tuple[Any, Any]:
    """U-HVED fusion: the product of the present modalities' Gaussians ``N(mu_m, exp(logvar_m))``
    and, with ``prior``, a standard-normal expert. Returns ``(mu, logvar)`` of the product:

        precision = [1] + sum_m 1/var_m,   mu = (sum_m mu_m/var_m) / precision

    Log-variances are clipped to ±LOGVAR_CLIP first. Without the prior, every sample needs a
    modality present.
    """
    import torch

    with torch.autocast(mu.device.type, enabled=False):
        return _product(*_experts(mu, logvar), _weights(mask, mu), prior)


def gaussian_kl(mu_1: Any, logvar_1: Any, mu_2: Any, logvar_2: Any) -> Any:
    """KL(N(mu_1, var_1) || N(mu_2, var_2)) per element, averaged over every element:
    ``0.5 * (logvar_2 - logvar_1 + (var_1 + (mu_1 - mu_2)^2) / var_2 - 1)``."""
    import torch

    with torch.autocast(mu_1.device.type, enabled=False):
        mu_1, logvar_1, mu_2, logvar_2 = (t.float() for t in (mu_1, logvar_1, mu_2, logvar_2))
        ratio = (torch.exp(logvar_1) + (mu_1 - mu_2) ** 2) * torch.exp(-logvar_2)
        return (0.5 * (logvar_2 - logvar_1 + ratio - 1.0)).mean()


def all_subsets(n: int) -> list[tuple[int, ...]]:
    """The 2^n - 1 non-empty subsets of ``range(n)``, by size then index."""
    return [s for k in range(1, n + 1) for s in combinations(range(n), k)]


def hved_kl(mu: Any, logvar: Any, mask: Any) -> tuple[Any, Any]:
    """U-HVED's two KL terms at one scale (Dorent et al., MICCAI 2019; ReubenDo/U-HVED):

    * ``inter``: KL(full posterior || sub-posterior), summed over the 2^M - 1 subsets of the
      modalities and divided by 2^M - 2 (the repository's 1/14 for M = 4);
    * ``prior``: KL(sub-posterior || N(0, 1)), averaged over the 2^M - 1 subsets,

    where the full posterior fuses the modalities present in each sample (``mask``) and every
    posterior includes the prior expert. Returns ``(inter, prior)``.
    """
    import torch

    m = mu.shape[0]
    with torch.autocast(mu.device.type, enabled=False):
        precision_m, weighted_m = _experts(mu, logvar)
        full_mu, full_logvar = _product(precision_m, weighted_m, _weights(mask, mu), True)
        subsets = all_subsets(m)
        inter = prior = 0.0
        zeros = torch.zeros_like(full_mu)
        for subset in subsets:
            chosen = torch.zeros(m, *([1] * (mu.dim() - 1)), device=mu.device)
            chosen[list(subset)] = 1.0
            sub_mu, sub_logvar = _product(precision_m, weighted_m, chosen, True)
            inter = inter + gaussian_kl(full_mu, full_logvar, sub_mu, sub_logvar)
            prior = prior + gaussian_kl(sub_mu, sub_logvar, zeros, zeros)
    return inter / max(len(subsets) - 1, 1), prior / len(subsets)


def draw_subsets(batch: int, n: int, generator: Any = None, device: Any = "cpu") -> Any:
    """Modality dropout: for each sample, draw k uniformly from 1..n, then a uniformly random
    subset of size k. Returns a ``(n, batch)`` boolean presence mask."""
    import torch

    mask = torch.zeros(n, batch, dtype=torch.bool)
    for b in range(batch):
        k = int(torch.randint(1, n + 1, (1,), generator=generator))
        chosen = torch.randperm(n, generator=generator)[:k]
        mask[chosen, b] = True
    return mask.to(device)
