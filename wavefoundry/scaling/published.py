"""The compute planner against published runs: the table of ``wavefoundry scaling plan --check-published``.

Each :class:`Check` puts a published fact (Stable Audio Open's DiT training, SODA's 4B run and law) next to what
the planner (``scaling/plan.py``) computes from the published inputs; docs/scaling_plan.md shows the table and
says how far apart they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from wavefoundry.scaling.plan import (
    HARDWARE,
    HardwareProfile,
    besiroglu,
    check_mfu,
    chinchilla,
    cluster_flops,
    implied_mfu,
    rule_of_thumb,
    soda,
    training_time,
)

# Published facts the planner is checked against (docs/scaling_plan.md). Evans et al. 2024 ("Stable Audio Open",
# arXiv 2407.14358): the DiT (1.06e9 parameters) trained 338 h on 64 A100s, batch 4 per GPU of 1024-latent sequences;
# we found no published step count. Manakul et al. 2026 (SODA): the 4B model (non-embedding parameters) on 500B tokens.
SAO_DIT = {"params": 1.06e9, "n_gpus": 64, "gpu": "a100", "hours": 338.0, "batch_per_gpu": 4, "latents": 1024}
SODA_4B = {"params": 4e9, "tokens": 5e11}
# SODA §4.3 (Table 1) token-composition ablation: 1.7B on 30B tokens at 3e20 FLOPs; a configuration, not a stated N*.
SODA_ABLATION = {"budget": 3e20, "params": 1.7e9}
# SODA's 4B run as summarised second-hand (not verified here): ~1.3e22 FLOPs, about a week on a TPU v5p-256 slice
# (128 chips; Google's v5p datasheet: 459 TFLOP/s bf16 per chip).
SODA_REPORTED = {"flops": 1.3e22, "tpu_chips": 128, "tpu_peak": 459e12, "hours": 7 * 24.0}


@dataclass(frozen=True, kw_only=True)
class Check:
    """One published fact next to what the planner computes from the published inputs."""

    what: str
    published: str
    planner: str
    value: float | None = None
    note: str = ""


def published_checks(mfu: float = 0.4) -> list[Check]:
    """The checks of docs/scaling_plan.md; ``mfu`` is the assumed utilisation where one is needed."""
    mfu = check_mfu(mfu)
    rows: list[Check] = []

    def add(what: str, published: str, planner: str, value: float | None = None, note: str = "") -> None:
        rows.append(Check(what=what, published=published, planner=planner, value=value, note=note))

    n = SAO_DIT["params"]
    per_step = SAO_DIT["n_gpus"] * SAO_DIT["batch_per_gpu"] * SAO_DIT["latents"]
    cap = cluster_flops(HARDWARE["a100"], SAO_DIT["n_gpus"], SAO_DIT["hours"])
    full = cap / (6 * n * per_step)  # steps that would use every peak FLOP of the 338 h at 6 N per latent
    add("SAO DiT: latents per step", "64 GPUs x 4 x 1024", f"{per_step:,}", per_step)
    add("SAO DiT: 64 A100 x 338 h at peak", "338 h, 64 A100", f"{cap:.3e} FLOPs", cap)
    add(f"SAO DiT: steps at MFU {mfu:g} (6ND)", "not found", f"{mfu * full:.3g}", mfu * full,
        "derived: MFU x capacity / (6 N x latents per step)")  # fmt: skip
    add(f"SAO DiT: latents seen at MFU {mfu:g}", "not found", f"{mfu * full * per_step:.3g}", mfu * full * per_step)
    add("SAO DiT: implied MFU of 338 h at 6ND", "needs the step count S",
        f"S / {full:.3g} ({1e5 / full:.2%} per 100k steps)", 1.0 / full,
        "6ND leaves out attention scores, T5 and any on-the-fly VAE encoding")  # fmt: skip

    c = 6 * SODA_4B["params"] * SODA_4B["tokens"]
    add("SODA 4B on 500B tokens: C = 6ND", "~1.3e22 (second-hand)", f"{c:.3g}", c,
        f"{c / SODA_REPORTED['flops'] - 1:+.0%}: 6ND omits attention and the head")  # fmt: skip
    add("SODA law N* at that C", "a = 0.367, b = 0.579, no k_N", "not computable without k_N",
        note="--k-n or --anchor supply it")  # fmt: skip
    k_if_opt = SODA_4B["params"] / c ** soda().a
    add("what-if: k_N if SODA-4B were optimal", "-", f"{k_if_opt:.4g}", k_if_opt, "k_N = 4e9 / C^0.367")
    anchored = soda().anchored(SODA_ABLATION["budget"], SODA_ABLATION["params"])
    n_w, d_w = anchored.n_opt(c), anchored.d_opt(c)
    add("what-if: SODA N* through the 3e20/1.7B ablation", "-", f"N* {n_w:.3g}, D* {d_w:.3g} (4B = {4e9 / n_w:.2f} N*)",
        n_w, "assumes that ablation point was compute-optimal; the paper does not say so")  # fmt: skip
    for law in (chinchilla(), besiroglu()):
        n_l, d_l = law.n_opt(c), law.d_opt(c)
        add(f"{law.name} N*, D* at {c:.2g}", "-", f"N* {n_l:.3g}, D* {d_l:.3g} (4B = {4e9 / n_l:.2f} N*)", n_l)
    n_r, d_r = rule_of_thumb(c)
    add("20 tokens per parameter at that C", "SODA: 125 tokens/param", f"N {n_r:.3g}, D {d_r:.3g}", n_r)
    for key in ("h100", "h200", "a100"):
        hours = training_time(c, HARDWARE[key], mfu=mfu).gpu_hours
        add(f"SODA 4B: {HARDWARE[key].name} GPU-hours at MFU {mfu:g}", "none (trained on TPU v5p)", f"{hours:,.0f}",
            hours)  # fmt: skip
    tpu = HardwareProfile(name="TPU v5p chip", peak_bf16_flops=SODA_REPORTED["tpu_peak"])
    m_tpu = implied_mfu(c, tpu, SODA_REPORTED["tpu_chips"], SODA_REPORTED["hours"])
    add("SODA 4B: implied MFU, ~1 week on v5p-256", "'about a week' (second-hand)", f"{m_tpu:.2f}", m_tpu,
        "128 chips x 459 TFLOP/s x 168 h, C = 6ND")  # fmt: skip
    return rows


def checks_table(rows: list[Check]) -> str:
    """A markdown table of ``rows``."""
    lines = ["| check | published | planner | note |", "|---|---|---|---|"]
    lines += [f"| {r.what} | {r.published} | {r.planner} | {r.note} |" for r in rows]
    return "\n".join(lines)
