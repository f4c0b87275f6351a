"""Bottlenecks: VAE KL and sampling, residual VQ (EMA, k-means, dead codes, dropout), FSQ, usage statistics, configs."""

import itertools
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from wavefoundry.codecs.bottlenecks import (
    FSQ,
    MIN_STD,
    BottleneckConfig,
    CodebookUsage,
    FSQConfig,
    ResidualVQ,
    RVQConfig,
    VAEBottleneck,
    VAEConfig,
    build_bottleneck,
    codebook_usage,
    kmeans,
    scale_bias_for_std,
    vae_sample,
)
from wavefoundry.codecs.quantizers import EMA_EPS
from wavefoundry.config import ConfigError, apply_overrides, from_dict, to_dict


def clustered(b: int, d: int, t: int, n_clusters: int, spread: float = 0.05, seed: int = 0) -> torch.Tensor:
    """(b, d, t) vectors scattered tightly around n_clusters random centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, d, generator=g) * 3
    which = torch.randint(0, n_clusters, (b, t), generator=g)
    x = centres[which] + spread * torch.randn(b, t, d, generator=g)  # (B, T, D)
    return x.transpose(1, 2).contiguous()


def rvq(**kw) -> ResidualVQ:
    base = {"dim": 4, "codebook_size": 8, "num_quantizers": 3, "kmeans_iters": 5}
    return ResidualVQ(RVQConfig(**{**base, **kw}))


def set_codebook(layer, codebook: torch.Tensor, cluster_size: torch.Tensor) -> None:
    with torch.no_grad():
        layer.codebook.copy_(codebook)
        layer.cluster_size.copy_(cluster_size)
        if hasattr(layer, "embed_sum"):
            layer.embed_sum.copy_(codebook * cluster_size[:, None])
        layer.initialized.fill_(True)


# --- VAE --------------------------------------------------------------------------------------------------------


def test_vae_kl_matches_hand_formula_and_twice_analytic_kl():
    torch.manual_seed(0)
    vae = VAEBottleneck(VAEConfig(latent_dim=3))
    z = torch.randn(2, 6, 5)
    out = vae.encode(z)
    mean, scale = z[:, :3], z[:, 3:]
    sigma = torch.log1p(torch.exp(scale)) + 1e-4
    expected = 0.0
    for b, t in itertools.product(range(2), range(5)):
        m, s = mean[b, :, t], sigma[b, :, t]
        expected += float((m**2 + s**2 - 2 * torch.log(s) - 1).sum())
    expected /= 2 * 5
    assert out.losses["kl"].item() == pytest.approx(expected, rel=1e-5)
    analytic = kl_divergence(Normal(mean, sigma), Normal(0.0, 1.0)).sum(1).mean()
    assert out.losses["kl"].item() == pytest.approx(2 * analytic.item(), rel=1e-5)
    assert out.codes is None and out.latents.shape == (2, 3, 5)


def test_vae_kl_vanishes_at_the_prior():
    vae = VAEBottleneck(VAEConfig(latent_dim=4))
    # softplus(scale) + 1e-4 = 1  <=>  scale = log(exp(1 - 1e-4) - 1)
    scale = math.log(math.expm1(1 - 1e-4))
    z = torch.cat([torch.zeros(1, 4, 7), torch.full((1, 4, 7), scale)], 1)
    assert abs(vae.encode(z).losses["kl"].item()) < 1e-5


def test_vae_sampling_statistics():
    torch.manual_seed(1)
    vae = VAEBottleneck(VAEConfig(latent_dim=2))
    mean = torch.tensor([1.5, -0.5])
    scale = torch.tensor([0.3, -2.0])
    T = 20000
    z = torch.cat([mean[None, :, None].expand(1, 2, T), scale[None, :, None].expand(1, 2, T)], 1)
    latents = vae.encode(z).latents[0]  # (2, T)
    sigma = torch.nn.functional.softplus(scale) + 1e-4
    # 5 standard errors of the sample mean / sample std
    assert torch.all((latents.mean(1) - mean).abs() < 5 * sigma / math.sqrt(T))
    assert torch.all((latents.std(1) / sigma - 1).abs() < 5 / math.sqrt(2 * T))


def test_vae_deterministic_mode_and_seeded_sampling():
    vae = VAEBottleneck(VAEConfig(latent_dim=3)).eval()
    z = torch.randn(2, 6, 4)
    det = vae.encode(z, sample=False)
    torch.testing.assert_close(det.latents, z[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(vae.encode(z, sample=False).latents, det.latents, rtol=0, atol=0)
    torch.manual_seed(5)
    a = vae.encode(z).latents  # samples in eval too, like stable-audio-tools
    torch.manual_seed(5)
    b = vae.encode(z).latents
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - det.latents).abs().max() > 1e-3
    assert det.losses["kl"].item() == pytest.approx(vae.encode(z).losses["kl"].item())
    assert vae.decode(a) is a


def test_vae_shapes_and_bad_input():
    vae = VAEBottleneck(VAEConfig(latent_dim=3))
    assert (vae.input_dim, vae.latent_dim) == (6, 3)
    with pytest.raises(ValueError, match=r"shape \(B, 6, T\)"):
        vae.encode(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"shape \(B, 6, T\)"):
        vae.encode(torch.randn(6, 4))
    with pytest.raises(ValueError, match="NaN"):
        vae.encode(torch.full((1, 6, 4), float("nan")))
    with pytest.raises(ValueError, match="floating"):
        vae.encode(torch.ones(1, 6, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, 3, T\)"):
        vae.decode(torch.randn(1, 6, 4))
    with pytest.raises(ValueError, match="init_std"):
        VAEConfig(init_std=MIN_STD)


@pytest.mark.parametrize("std", [1e-3, 0.02, 0.7, 3.0])
def test_scale_bias_for_std_inverts_the_posterior_std(std):
    stdev = vae_sample(torch.zeros(1, 1, 1), torch.full((1, 1, 1), scale_bias_for_std(std)))[2]
    assert stdev.item() == pytest.approx(std, rel=1e-5)


def test_init_std_sets_the_initial_posterior_std():
    """With init_std the latent carries the input above the posterior noise from step 0 (default init: it doesn't)."""
    from wavefoundry.codecs.autoencoder import Autoencoder, AutoencoderConfig
    from wavefoundry.codecs.oobleck import oobleck_tiny_16k_mono

    audio = 0.1 * torch.randn(2, 1, 2048, generator=torch.Generator().manual_seed(0))
    snr = {}
    for init_std in (None, 0.02):
        torch.manual_seed(0)
        vae = VAEConfig(latent_dim=16, init_std=init_std)
        cfg = AutoencoderConfig(oobleck=oobleck_tiny_16k_mono(), bottleneck=BottleneckConfig(kind="vae", vae=vae))
        ae = Autoencoder(cfg)
        with torch.no_grad():
            out, silent = ae.encode(audio, sample=False), ae.encode(torch.zeros_like(audio), sample=False)
        signal = (out.latents - silent.latents).pow(2).mean().sqrt()  # the input-dependent part of the mean
        snr[init_std] = (signal / out.metrics["posterior_std"]).item()
        if init_std is not None:
            assert ae.encoder.proj.bias[16:].eq(scale_bias_for_std(init_std)).all()
            assert ae.encoder.proj.bias[:16].abs().max() < 1  # the mean half keeps torch's init
            assert out.metrics["posterior_std"].item() == pytest.approx(init_std, rel=0.5)
    assert snr[0.02] > 10 * snr[None]  # the noise that drowned the signal is ~35x smaller


# --- residual VQ ------------------------------------------------------------------------------------------------


def test_rvq_error_decreases_with_more_quantizers():
    torch.manual_seed(0)
    q = rvq(num_quantizers=4, codebook_size=6)
    z = torch.randn(4, 4, 32)
    q.train().encode(z)  # k-means initialisation on this batch
    out = q.eval().encode(z)
    errors = [(q.codes_to_latents(out.codes[:, :n]) - z).pow(2).mean().item() for n in range(1, 5)]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] == pytest.approx((out.latents - z).pow(2).mean().item(), rel=1e-4)


@pytest.mark.parametrize(("update", "codebook_dim"), [("ema", None), ("straight_through", None), ("ema", 2)])
def test_rvq_codes_round_trip(update, codebook_dim):
    torch.manual_seed(0)
    q = rvq(update=update, codebook_dim=codebook_dim)
    z = torch.randn(2, 4, 16)
    q.train().encode(z)
    out = q.eval().encode(z)
    assert out.codes.shape == (2, 3, 16) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 8
    torch.testing.assert_close(q.codes_to_latents(out.codes), out.latents)
    assert q.decode(out.latents) is out.latents


def test_rvq_ema_update_closed_form():
    cfg = RVQConfig(dim=2, codebook_size=2, num_quantizers=1, init="random", ema_decay=0.9, dead_code_threshold=0)
    q = ResidualVQ(cfg).train()
    old = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    set_codebook(q.layers[0], old, torch.ones(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 10.0]])  # nearest codes: 0, 0, 1
    out = q.encode(x.t()[None])  # (1, 2, 3)
    assert out.codes.tolist() == [[[0, 0, 1]]]
    torch.testing.assert_close(out.latents[0].t(), old[[0, 0, 1]])  # quantized with the pre-update codebook
    layer = q.layers[0]
    cluster = torch.tensor([0.9 + 0.1 * 2, 0.9 + 0.1 * 1])
    embed_sum = 0.9 * old + 0.1 * torch.tensor([[1.0, 1.0], [9.0, 10.0]])
    n = cluster.sum()
    smoothed = (cluster + EMA_EPS) / (n + 2 * EMA_EPS) * n
    torch.testing.assert_close(layer.cluster_size, cluster)
    torch.testing.assert_close(layer.embed_sum, embed_sum)
    torch.testing.assert_close(layer.codebook, embed_sum / smoothed[:, None])
    # commitment = mean squared distance to the assigned codes
    commit = ((x - old[[0, 0, 1]]) ** 2).mean()
    assert out.losses["commitment"].item() == pytest.approx(commit.item(), rel=1e-6)


def test_rvq_sync_fn_sums_statistics_across_ranks():
    cfg = RVQConfig(dim=2, codebook_size=2, num_quantizers=1, init="random", ema_decay=0.9, dead_code_threshold=0)
    q = ResidualVQ(cfg).train()
    set_codebook(q.layers[0], torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.ones(2))
    seen = []

    def two_identical_ranks(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape))
        return 2 * t

    q.set_distributed_hooks(sync_fn=two_identical_ranks)
    q.encode(torch.tensor([[[1.0, 0.0, 9.0], [0.0, 1.0, 10.0]]]))
    assert seen == [(2, 3)]  # one call per stage: [counts | sums]
    torch.testing.assert_close(q.layers[0].cluster_size, torch.tensor([0.9 + 0.1 * 4, 0.9 + 0.1 * 2]))
    torch.testing.assert_close(q.layers[0].embed_sum, torch.tensor([[0.2, 0.2], [9.0 + 1.8, 9.0 + 2.0]]))


@pytest.mark.parametrize("update", ["ema", "straight_through"])
def test_rvq_dead_codes_are_replaced_by_batch_vectors(update):
    cfg = RVQConfig(
        dim=2, codebook_size=4, num_quantizers=1, init="random", update=update, ema_decay=0.5, dead_code_threshold=2.0
    )
    q = ResidualVQ(cfg).train()
    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0], [-100.0, 100.0]])
    set_codebook(q.layers[0], codebook, torch.full((4,), 5.0))
    g = torch.Generator().manual_seed(0)
    near = torch.cat([torch.zeros(8, 2), torch.ones(8, 2)]) + 0.05 * torch.randn(16, 2, generator=g)  # codes 0, 1
    z = near.t().reshape(2, 2, 8)  # (B, D, T) with B*T = 16 vectors
    q.encode(z)  # usage of codes 2 and 3: 5 -> 2.5, still alive
    torch.testing.assert_close(q.layers[0].codebook.data[2:], codebook[2:], rtol=1e-4, atol=0)
    q.encode(z)  # 2.5 -> 1.25 < 2: replaced
    new = q.layers[0].codebook.data
    vectors = z.transpose(1, 2).reshape(-1, 2)  # (B*T, D)
    for row in new[2:]:
        assert torch.isclose(vectors, row).all(1).any(), f"{row} is not a batch vector"
    torch.testing.assert_close(q.layers[0].cluster_size[2:], torch.full((2,), 2.0))
    assert q.layers[0].cluster_size[:2].min() > 2.0  # live codes keep their statistics
    q.encode(z)  # the EMA statistics were reset too: the next step does not pull the codes back to +-100
    assert q.layers[0].codebook.data[2:].abs().max() < 2.0


def test_rvq_kmeans_init_beats_random_init():
    z = clustered(4, 4, 32, n_clusters=4)

    def error(init: str) -> float:
        torch.manual_seed(0)
        q = rvq(num_quantizers=1, codebook_size=8, init=init, kmeans_iters=10)
        q.train().encode(z)
        out = q.eval().encode(z)
        return (out.latents - z).pow(2).mean().item()

    random_err, kmeans_err = error("random"), error("kmeans")
    assert kmeans_err < 0.01 * random_err
    assert kmeans_err < 0.01  # all 4 tight clusters found (per-channel variance 0.05^2)


def test_kmeans_iterations_never_increase_the_error():
    x = clustered(1, 3, 200, n_clusters=6, spread=0.5)[0].t()  # (200, 3)

    def error(centroids: torch.Tensor) -> float:
        return torch.cdist(x, centroids).min(1).values.pow(2).mean().item()

    errors = []
    for iters in range(5):
        torch.manual_seed(1)  # same starting sample for every run
        centroids, counts = kmeans(x, 6, iters)
        errors.append(error(centroids))
        assert counts.sum().item() == 200
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < errors[0]


def test_rvq_init_is_deterministic_given_the_seed():
    z = torch.randn(2, 4, 16)
    books = []
    for _ in range(2):
        torch.manual_seed(3)
        q = rvq()
        q.train().encode(z)
        books.append(torch.stack([layer.codebook.detach() for layer in q.layers]))
    torch.testing.assert_close(books[0], books[1], rtol=0, atol=0)


def test_rvq_quantizer_dropout_train_vs_eval():
    torch.manual_seed(0)
    q = rvq(num_quantizers=4, update="straight_through", quantizer_dropout=1.0, dead_code_threshold=0, init="data")
    z = torch.randn(16, 4, 8)
    out = q.train().encode(z)
    assert out.metrics["active_quantizers"].item() < 4
    used = []
    for b in range(16):
        partial = [q.codes_to_latents(out.codes[b : b + 1, :n]) for n in range(1, 5)]
        matches = [n + 1 for n, p in enumerate(partial) if torch.allclose(p, out.latents[b : b + 1], atol=1e-5)]
        assert matches, f"item {b} is no prefix sum of its codes"
        used.append(matches[0])
    assert min(used) < 4
    assert sum(used) / 16 == pytest.approx(out.metrics["active_quantizers"].item())
    full = q.eval().encode(z)
    assert full.metrics["active_quantizers"].item() == 4
    torch.testing.assert_close(full.latents, q.codes_to_latents(full.codes))


@pytest.mark.parametrize("update", ["ema", "straight_through"])
def test_rvq_straight_through_gradient(update):
    torch.manual_seed(0)
    q = rvq(update=update, codebook_dim=2)
    z = torch.randn(2, 4, 8, requires_grad=True)
    q.train().encode(z.detach())
    out = q.encode(z)
    (out.latents.sum() + sum(out.losses.values())).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    proj = q.layers[0].in_proj.weight.grad
    assert proj is not None and proj.abs().sum() > 0
    codebook_grad = q.layers[0].codebook.grad
    if update == "ema":
        assert codebook_grad is None and set(out.losses) == {"commitment"}
    else:
        assert codebook_grad is not None and codebook_grad.abs().sum() > 0
        assert set(out.losses) == {"commitment", "codebook"}


def test_rvq_identity_gradient_without_projection():
    torch.manual_seed(0)
    q = rvq(init="random")
    z = torch.randn(2, 4, 8, requires_grad=True)
    q.eval().encode(z).latents.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_rvq_state_dict_resumes_without_reinit():
    torch.manual_seed(0)
    q = rvq(codebook_dim=2)
    z = torch.randn(2, 4, 16)
    q.train().encode(z)
    state = q.state_dict()
    assert {"layers.0.codebook", "layers.0.embed_sum", "layers.0.cluster_size", "layers.0.initialized"} <= set(state)
    torch.manual_seed(99)
    fresh = rvq(codebook_dim=2)
    fresh.load_state_dict(state)
    outs = []
    for model in (fresh, q):
        torch.manual_seed(1)  # same draws for dead-code candidates
        outs.append(model.train().encode(z + 5.0))  # initialized: no new k-means on this batch
    torch.testing.assert_close(outs[0].codes, outs[1].codes, rtol=0, atol=0)
    for a, b in zip(fresh.layers, q.layers):
        torch.testing.assert_close(a.codebook, b.codebook)
        torch.testing.assert_close(a.cluster_size, b.cluster_size)


def test_rvq_bad_inputs():
    q = rvq()
    with pytest.raises(ValueError, match="NaN"):
        q.encode(torch.tensor(float("nan")).expand(1, 4, 3).clone())
    with pytest.raises(ValueError, match=r"\(B, 4, T\)"):
        q.encode(torch.randn(1, 3, 5))
    codes = torch.zeros(1, 3, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"code id 8 out of range; valid ids are 0\.\.7"):
        q.codes_to_latents(codes + 8)
    with pytest.raises(ValueError, match=r"code id -1 out of range"):
        q.codes_to_latents(codes - 1)
    with pytest.raises(ValueError, match=r"K=4 codebooks; valid: 1\.\.3"):
        q.codes_to_latents(torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"K=0"):
        q.codes_to_latents(torch.zeros(1, 0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        q.codes_to_latents(codes.float())
    with pytest.raises(ValueError, match=r"\(B, K, T\)"):
        q.codes_to_latents(codes[0])


# --- FSQ --------------------------------------------------------------------------------------------------------


def grid_input(levels: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder outputs hitting every grid point once, by inverting the paper's bound, and their mixed-radix codes."""
    L = torch.tensor(levels, dtype=torch.float64)
    half_l = (L - 1) * (1 + 1e-3) / 2
    offset = (L % 2 == 0).double() * 0.5
    shift = torch.atanh(offset / half_l)
    digits = torch.tensor(list(itertools.product(*[range(lv) for lv in levels])), dtype=torch.float64)  # (N, d)
    ints = digits - torch.floor(L / 2)  # the rounded bound values, centred
    z = torch.atanh((ints + offset) / half_l) - shift  # (N, d)
    basis = torch.cumprod(torch.cat([torch.ones(1), L[:-1]]), 0)
    codes = (digits * basis).sum(1).long()
    return z.t()[None].float(), codes[None, None]  # (1, d, N), (1, 1, N)


def test_fsq_codes_biject_with_the_grid():
    levels = (3, 4, 2)
    fsq = FSQ(FSQConfig(levels=levels))
    assert (fsq.input_dim, fsq.latent_dim, fsq.codebook_size, fsq.num_quantizers) == (3, 3, 24, 1)
    z, expected = grid_input(levels)
    out = fsq.encode(z)
    torch.testing.assert_close(out.codes, expected, rtol=0, atol=0)
    assert sorted(out.codes.flatten().tolist()) == list(range(24))
    grid = fsq.codes_to_latents(torch.arange(24)[None, None])[0].t()  # (24, 3)
    assert len({tuple(row.tolist()) for row in grid}) == 24
    torch.testing.assert_close(grid, out.latents[0].t()[expected[0, 0].argsort()])
    for j, lv in enumerate(levels):
        assert grid[:, j].unique().numel() == lv
    assert grid.min() >= -1 and grid.max() <= 1


def test_fsq_bounds_and_round_trip_on_extreme_inputs():
    fsq = FSQ(FSQConfig())
    assert fsq.codebook_size == 1000 and fsq.input_dim == 4
    z = torch.randn(3, 4, 50) * 1e4
    out = fsq.encode(z)
    assert out.latents.abs().max() <= 1.0
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 1000
    torch.testing.assert_close(fsq.codes_to_latents(out.codes), out.latents)
    assert out.losses == {} and "perplexity_0" in out.metrics
    # the shift makes bound(0) = 0, so zero is a grid point for even levels too
    assert fsq.encode(torch.zeros(1, 4, 1)).latents.abs().max() == 0


def test_fsq_gradient_passes_through_rounding_and_projections():
    torch.manual_seed(0)
    fsq = FSQ(FSQConfig(dim=6, levels=(5, 5), num_codebooks=2))
    z = torch.randn(2, 6, 7, requires_grad=True)
    out = fsq.encode(z)
    out.latents.pow(2).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert fsq.project_in.weight.grad.abs().sum() > 0
    torch.testing.assert_close(fsq.codes_to_latents(out.codes), out.latents)


def test_fsq_splits_channels_between_codebooks():
    fsq = FSQ(FSQConfig(levels=(8, 5), num_codebooks=2))
    assert (fsq.input_dim, fsq.num_quantizers, fsq.codebook_size) == (4, 2, 40)
    z = torch.randn(2, 4, 9)
    out = fsq.encode(z)
    changed = z.clone()
    changed[:, 2:] = torch.randn(2, 2, 9) * 3  # second group only
    out2 = fsq.encode(changed)
    torch.testing.assert_close(out2.codes[:, 0], out.codes[:, 0], rtol=0, atol=0)
    assert (out2.codes[:, 1] != out.codes[:, 1]).any()


def test_fsq_bad_inputs():
    fsq = FSQ(FSQConfig(levels=(3, 3), num_codebooks=2))
    with pytest.raises(ValueError, match="NaN"):
        fsq.encode(torch.full((1, 4, 2), float("inf")))
    with pytest.raises(ValueError, match=r"\(B, 4, T\)"):
        fsq.encode(torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match=r"code id 9 out of range; valid ids are 0\.\.8"):
        fsq.codes_to_latents(torch.full((1, 2, 3), 9))
    with pytest.raises(ValueError, match=r"K=1 codebooks; valid: 2"):
        fsq.codes_to_latents(torch.zeros(1, 1, 3, dtype=torch.long))


# --- usage statistics -------------------------------------------------------------------------------------------


def test_usage_uniform_and_single_code():
    N = 16
    uniform = torch.arange(N).repeat(3)[None, None]  # (1, 1, 48)
    single = torch.full((2, 1, 10), 5)
    u, s = codebook_usage(uniform, N), codebook_usage(single, N)
    assert u["perplexity"].item() == pytest.approx(N, rel=1e-6)
    assert u["entropy_bits"].item() == pytest.approx(4.0, rel=1e-6)
    assert u["used_fraction"].item() == 1.0
    assert s["perplexity"].item() == pytest.approx(1.0)
    assert s["entropy_bits"].item() == pytest.approx(0.0, abs=1e-7)
    assert s["used_fraction"].item() == pytest.approx(1 / N)


def test_usage_per_quantizer_and_two_codes():
    codes = torch.stack([torch.tensor([0, 1, 0, 1]), torch.tensor([2, 2, 2, 2])])[None]  # (1, 2, 4)
    stats = codebook_usage(codes, 4)
    torch.testing.assert_close(stats["perplexity"], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(stats["used_fraction"], torch.tensor([0.5, 0.25]))


def test_streaming_usage_matches_one_batch():
    torch.manual_seed(0)
    batches = [torch.randint(0, 7, (2, 3, 5)), torch.randint(0, 3, (4, 3, 2))]
    acc = CodebookUsage(3, 7)
    for codes in batches:
        acc.update(codes)
    flat = torch.cat([c.permute(0, 2, 1).reshape(-1, 3) for c in batches])[..., None]  # (B*T, K, 1)
    whole = codebook_usage(flat, 7)
    for key, value in acc.compute().items():
        torch.testing.assert_close(value, whole[key])
    acc.reset()
    assert acc.counts.sum() == 0
    with pytest.raises(ValueError, match="K=2"):
        acc.update(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        codebook_usage(torch.full((1, 1, 2), 7), 7)


# --- configs and builder ----------------------------------------------------------------------------------------


def test_builder_resolves_each_kind():
    vae = build_bottleneck(BottleneckConfig(kind="vae", vae=VAEConfig(latent_dim=8)))
    assert isinstance(vae, VAEBottleneck) and (vae.input_dim, vae.latent_dim) == (16, 8)
    q = build_bottleneck(BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=16, codebook_size=32, num_quantizers=2)))
    assert isinstance(q, ResidualVQ) and (q.input_dim, q.num_quantizers, q.codebook_size) == (16, 2, 32)
    f = build_bottleneck(BottleneckConfig(kind="fsq"))
    assert isinstance(f, FSQ) and f.codebook_size == 1000
    with pytest.raises(TypeError, match="BottleneckConfig"):
        build_bottleneck(VAEConfig())


def test_bottleneck_config_json_round_trip_and_kind_switch():
    cfg = BottleneckConfig(kind="rvq", rvq=RVQConfig(dim=32, codebook_dim=8, update="straight_through"))
    data = to_dict(cfg)
    assert data["vae"] is None and data["fsq"] is None and data["rvq"]["codebook_dim"] == 8
    assert from_dict(BottleneckConfig, data) == cfg
    switched = apply_overrides(cfg, ["kind=fsq", "fsq.levels=8,8", "fsq.num_codebooks=2"])
    assert switched.rvq is None and switched.fsq == FSQConfig(levels=(8, 8), num_codebooks=2)
    vae = apply_overrides(BottleneckConfig(), ["vae.latent_dim=16"])
    assert vae.vae == VAEConfig(latent_dim=16)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"kind": "vq"}, "not one of"),
        ({"kind": "rvq", "rvq": {"codebook_size": 0}}, "codebook_size must be >= 1"),
        ({"kind": "rvq", "rvq": {"update": "sgd"}}, "not one of"),
        ({"kind": "rvq", "rvq": {"ema_decay": 1.0}}, "ema_decay"),
        ({"kind": "rvq", "rvq": {"quantizer_dropout": 1.5}}, "quantizer_dropout"),
        ({"kind": "rvq", "rvq": {"codebok_size": 4}}, "unknown config key 'codebok_size'"),
        ({"kind": "fsq", "fsq": {"levels": [8, 1]}}, "levels"),
        ({"kind": "vae", "vae": {"latent_dim": 0}}, "latent_dim"),
    ],
)
def test_bad_configs(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(BottleneckConfig, data)


def test_direct_construction_validates_literals():
    with pytest.raises(ValueError, match="valid kinds: fsq, rvq, vae"):
        BottleneckConfig(kind="vq")
    with pytest.raises(ValueError, match=r"rvq\.init"):
        RVQConfig(init="zeros")
