"""The fusion layers and the U-HVED KL terms against hand-computed values and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from kdbench_plugins.hetero_modal.fusion import (
    all_subsets,
    draw_subsets,
    gaussian_kl,
    hved_kl,
    mean_variance,
    product_of_gaussians,
)


def _features(*values):
    """(M, B=1, C=1, 1, 1, 1) features, one scalar per modality."""
    return torch.tensor(values, dtype=torch.float32).reshape(len(values), 1, 1, 1, 1, 1)


def _mask(*present, m=4):
    mask = torch.zeros(m, 1, dtype=torch.bool)
    mask[list(present)] = True
    return mask


@pytest.mark.parametrize(("present", "mean", "variance"), [
    ((1,), 3.0, 0.0),                 # one modality: its value, variance 0
    ((0, 3), 4.0, 9.0),               # 1 and 7: mean 4, ((1-4)^2 + (7-4)^2) / 2 = 9
    ((0, 1, 2, 3), 3.75, 4.6875),     # 1, 3, 4, 7: mean 15/4, population variance 75/16
])
def test_mean_variance_by_hand(present, mean, variance):
    fused = mean_variance(_features(1.0, 3.0, 4.0, 7.0), _mask(*present))
    assert fused.shape == (1, 2, 1, 1, 1)
    assert fused[0, 0].item() == pytest.approx(mean)
    assert fused[0, 1].item() == pytest.approx(variance)


def test_mean_variance_per_sample_subsets_match_numpy():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4, 3, 2, 2, 2, 2)).astype(np.float32)
    mask = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 1]], dtype=bool)
    fused = mean_variance(torch.from_numpy(f), torch.from_numpy(mask)).numpy()
    for b in range(3):
        chosen = f[mask[:, b], b]
        np.testing.assert_allclose(fused[b, :2], chosen.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fused[b, 2:], chosen.var(0), rtol=1e-5, atol=1e-6)


def test_product_of_gaussians_by_hand():
    # N(2, 1) and N(4, 4): precisions 1 and 1/4
    mu, logvar = _features(2.0, 4.0), torch.log(_features(1.0, 4.0))
    both = _mask(0, 1, m=2)
    m, lv = product_of_gaussians(mu, logvar, both, prior=False)
    # precision 5/4: var 0.8, mean (2*1 + 4/4) / (5/4) = 2.4
    assert m.item() == pytest.approx(2.4) and torch.exp(lv).item() == pytest.approx(0.8)
    m, lv = product_of_gaussians(mu, logvar, both, prior=True)
    # with N(0, 1): precision 9/4, var 4/9, mean 3 / (9/4) = 4/3
    assert m.item() == pytest.approx(4 / 3) and torch.exp(lv).item() == pytest.approx(4 / 9)
    m, lv = product_of_gaussians(mu, logvar, _mask(1, m=2), prior=True)
    # N(4, 4) with N(0, 1): precision 5/4, mean (4/4) / (5/4) = 0.8
    assert m.item() == pytest.approx(0.8) and torch.exp(lv).item() == pytest.approx(0.8)
    # one modality without the prior is that modality
    m, lv = product_of_gaussians(mu, logvar, _mask(1, m=2), prior=False)
    assert m.item() == pytest.approx(4.0) and torch.exp(lv).item() == pytest.approx(4.0)


def test_product_of_gaussians_is_the_normalised_density_product():
    """Against numerical integration: the product of the densities, renormalised."""
    x = np.linspace(-15, 15, 300001)
    mus, variances = [1.5, -0.5, 3.0], [0.7, 2.0, 5.0]
    density = stats.norm.pdf(x, 0, 1)  # the prior expert
    for mu, var in zip(mus, variances, strict=True):
        density = density * stats.norm.pdf(x, mu, np.sqrt(var))
    density /= np.trapezoid(density, x)
    mean = np.trapezoid(x * density, x)
    variance = np.trapezoid((x - mean) ** 2 * density, x)
    m, lv = product_of_gaussians(_features(*mus), torch.log(_features(*variances)),
                                 _mask(0, 1, 2, m=3))
    assert m.item() == pytest.approx(mean, rel=1e-5)
    assert torch.exp(lv).item() == pytest.approx(variance, rel=1e-5)


def test_gaussian_kl_closed_form_and_zero():
    mu1, var1, mu2, var2 = 0.3, 0.5, -1.0, 2.0
    expected = 0.5 * (np.log(var2 / var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1)
    got = gaussian_kl(*(torch.tensor([v]) for v in (mu1, np.log(var1), mu2, np.log(var2))))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # and by Monte Carlo from scipy's densities
    rng = np.random.default_rng(0)
    z = rng.normal(mu1, np.sqrt(var1), 400000)
    mc = np.mean(stats.norm.logpdf(z, mu1, np.sqrt(var1)) - stats.norm.logpdf(z, mu2,
                                                                                np.sqrt(var2)))
    assert got.item() == pytest.approx(mc, abs=5e-3)
    same = torch.tensor([0.7])
    assert gaussian_kl(same, same, same, same).item() == pytest.approx(0.0, abs=1e-7)


def test_hved_kl_matches_an_explicit_loop():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 2, 3, 2, 2, 2), torch.randn(4, 2, 3, 2, 2, 2)
    mask = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=torch.bool)
    inter, prior = hved_kl(mu, logvar, mask)

    def pog(subset_rows):  # per sample, by hand, with the prior expert
        precision = 1.0 + sum(torch.exp(-logvar[i]) for i in subset_rows)
        mean = sum(mu[i] * torch.exp(-logvar[i]) for i in subset_rows) / precision
        return mean, -torch.log(precision)

    subsets = all_subsets(4)
    assert len(subsets) == 15
    expected_inter = expected_prior = 0.0
    for subset in subsets:
        sub_mu, sub_lv = pog(subset)
        full = [pog([i for i in range(4) if mask[i, b]]) for b in range(2)]
        full_mu = torch.stack([full[b][0][b] for b in range(2)])
        full_lv = torch.stack([full[b][1][b] for b in range(2)])
        kl = 0.5 * (sub_lv - full_lv + (full_lv.exp() + (full_mu - sub_mu) ** 2)
                    / sub_lv.exp() - 1)
        expected_inter += kl.mean()
        expected_prior += (0.5 * (-sub_lv + sub_lv.exp() + sub_mu**2 - 1)).mean()
    assert inter.item() == pytest.approx(expected_inter.item() / 14, rel=1e-5)
    assert prior.item() == pytest.approx(expected_prior.item() / 15, rel=1e-5)


def test_modality_dropout_draws_k_uniformly_then_a_subset():
    generator = torch.Generator().manual_seed(0)
    mask = draw_subsets(20000, 4, generator=generator)
    assert mask.shape == (4, 20000) and bool(mask.any(0).all())
    sizes = np.bincount(mask.sum(0).numpy(), minlength=5)[1:]
    np.testing.assert_allclose(sizes / 20000, 0.25, atol=0.015)
    # within a size, every subset equally likely: e.g. the 6 pairs
    pairs = mask[:, mask.sum(0) == 2].T.numpy()
    counts = np.unique(pairs, axis=0, return_counts=True)[1]
    assert len(counts) == 6 and stats.chisquare(counts).pvalue > 1e-3
