"""IsoFLOP sweeps: decoders of several widths trained on the same compute budget, one table of held-out losses.

Per budget C and width d, a family rule gives the decoder shape; steps is the integer nearest
``C / (f(N) * batch_size * seq_len)`` with ``f`` the training FLOPs per token of the chosen convention
(``scaling/flops.py``, default Levanter's analytic count), so ``D = steps * batch_size * seq_len`` and
``C(N, D) = f(N) * D``. A point whose C lands more than ``tolerance`` (1%) away from the budget is left out, with
the reason. The depth rule is Marin's IsoFLOP recipe, which SODA (Manakul et al. 2026) sweeps with:
``n_layers = round(d / (64 + 4 log2 d - offset))``.

Each point trains as the "lm" task in its own run directory ``OUT/runs/<name>``; a finished run (final
checkpoint and final eval) is skipped, an unfinished one resumes from its latest checkpoint. ``OUT/table.csv``
holds one row per finished point (``table.COLUMNS``; ``loss`` = the final held-out ``nll``), rewritten after
each; ``scaling/table.py`` writes and reads it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from wavefoundry.config import ConfigError, to_dict
from wavefoundry.lm.decoder import DecoderConfig, param_count
from wavefoundry.scaling.flops import DEFAULT_CONVENTION, convention_fn
from wavefoundry.scaling.table import COLUMNS, write_jsonl, write_table
from wavefoundry.train import checkpoint as ckpt
from wavefoundry.train.engine import TrainingDiverged, train
from wavefoundry.train.logging import read_metrics
from wavefoundry.train.tasks import RunConfig, build_task, load_run_config

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class FamilyRule:
    """A decoder shape from its width d (Marin's IsoFLOP recipe; SODA, Manakul et al. 2026).

    ``n_layers = max(min_layers, round(d / (layer_base + layer_slope * log2 d - layer_offset)))``,
    ``n_heads = max(min_heads, d // head_ratio)``, ``n_kv_heads = max(1, n_heads // kv_group)``,
    ``head_dim`` fixed or ``d // n_heads``, ``ffn_dim = round(ffn_mult * d)``. Other decoder fields (vocabulary,
    RoPE base, tied embeddings, ...) come from the base config.
    """

    layer_base: float = 64.0
    layer_slope: float = 4.0
    layer_offset: float = 7.0
    head_ratio: int = 128
    kv_group: int = 1
    head_dim: int | None = None
    ffn_mult: float = 4.0
    min_layers: int = 1
    min_heads: int = 1

    def __post_init__(self) -> None:
        ints = {"head_ratio": self.head_ratio, "kv_group": self.kv_group, "min_layers": self.min_layers,
                "min_heads": self.min_heads, "head_dim": 2 if self.head_dim is None else self.head_dim}  # fmt: skip
        for name, value in ints.items():
            if value < 1:
                raise ConfigError(f"FamilyRule.{name} must be >= 1, got {value}")
        if not (self.ffn_mult > 0 and math.isfinite(self.ffn_mult)):
            raise ConfigError(f"FamilyRule.ffn_mult must be > 0, got {self.ffn_mult}")
        if not self.layer_base - self.layer_offset + self.layer_slope > 0:  # the divisor at d = 2 (log2 d = 1)
            raise ConfigError("FamilyRule: layer_base + layer_slope * log2(d) - layer_offset must be > 0 for d >= 2")

    def n_layers(self, dim: int) -> int:
        """Depth of width ``dim``."""
        divisor = self.layer_base + self.layer_slope * math.log2(dim) - self.layer_offset
        if divisor <= 0:
            raise ConfigError(f"FamilyRule: the depth divisor is {divisor:.3g} <= 0 at width {dim}")
        return max(self.min_layers, round(dim / divisor))

    def shape(self, dim: int, base: DecoderConfig) -> DecoderConfig:
        """``base`` with the shape of width ``dim``; raises ConfigError when the shape is not a valid decoder."""
        if dim < 2:
            raise ConfigError(f"width must be >= 2, got {dim}")
        n_heads = max(self.min_heads, dim // self.head_ratio)
        return dataclasses.replace(
            base,
            dim=dim,
            n_layers=self.n_layers(dim),
            n_heads=n_heads,
            n_kv_heads=max(1, n_heads // self.kv_group),
            head_dim=self.head_dim,
            ffn_dim=max(1, round(self.ffn_mult * dim)),
        )


def soda_rule() -> FamilyRule:
    """SODA's sweep rule as the issue states it: offset 7, heads of 128 (d / 128), kv heads = heads, FFN 4d."""
    return FamilyRule()


def marin_rule() -> FamilyRule:
    """Marin's 2025 IsoFLOP recipe (``layer_formula_offset`` 9, heads of 128, kv heads = heads, FFN 4d)."""
    return FamilyRule(layer_offset=9.0)


#: Rule name -> function returning it.
RULES: dict[str, Callable[[], FamilyRule]] = {"soda": soda_rule, "marin": marin_rule}


def family_rule(name: str) -> FamilyRule:
    """The rule ``name``; an unknown name raises ValueError listing the valid ones."""
    if name not in RULES:
        raise ValueError(f"unknown family rule {name!r}; valid: {', '.join(RULES)}")
    return RULES[name]()


@dataclass(kw_only=True)
class SweepConfig:
    """What to sweep: budgets (FLOPs), candidate widths, the shape rule and how steps are counted."""

    budgets: tuple[float, ...]
    dims: tuple[int, ...]
    rule: FamilyRule = field(default_factory=soda_rule)
    convention: str = DEFAULT_CONVENTION
    batch_size: int = 16
    seq_len: int = 512
    tolerance: float = 0.01
    min_steps: int = 1

    def __post_init__(self) -> None:
        if not self.budgets:
            raise ConfigError("no budgets given")
        for c in self.budgets:
            if not (isinstance(c, int | float) and math.isfinite(c) and c > 0):
                raise ConfigError(f"budgets must be finite and > 0, got {c!r}")
        if len(set(self.budgets)) != len(self.budgets):
            raise ConfigError(f"budgets repeat: {list(self.budgets)}")
        if not self.dims or any(d < 2 for d in self.dims) or len(set(self.dims)) != len(self.dims):
            raise ConfigError(f"dims must be distinct widths >= 2, got {list(self.dims)}")
        convention_fn(self.convention)
        if self.batch_size < 1 or self.seq_len < 1 or self.min_steps < 1:
            raise ConfigError("batch_size, seq_len and min_steps must be >= 1")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance must be in (0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class SweepPoint:
    """One (N, D) point of a budget: the decoder, its step count and the FLOPs it spends."""

    budget: float
    model: DecoderConfig
    steps: int
    batch_size: int
    seq_len: int
    convention: str
    flops_per_token: int

    @property
    def tokens(self) -> int:
        """D = steps * batch_size * seq_len."""
        return self.steps * self.batch_size * self.seq_len

    @property
    def flops(self) -> int:
        """C(N, D) under the convention."""
        return self.flops_per_token * self.tokens

    @property
    def name(self) -> str:
        """The run directory name, e.g. ``C1e+14-d64-L1-H1-B16``."""
        m = self.model
        return f"C{self.budget:.4g}-d{m.dim}-L{m.n_layers}-H{m.n_heads}-B{self.batch_size}"

    def row(self) -> dict[str, object]:
        """The table columns except ``loss`` and ``run_dir``."""
        m = self.model
        return {
            "budget": self.budget, "N": param_count(m), "N_nonemb": param_count(m, embeddings=False),
            "N_flops": self.flops_per_token / 6, "D": self.tokens, "steps": self.steps,
            "batch_size": self.batch_size, "seq_len": self.seq_len, "dim": m.dim, "n_layers": m.n_layers,
            "n_heads": m.n_heads, "n_kv_heads": m.n_kv_heads, "head_dim": m.dh, "ffn_dim": m.ffn_dim,
            "vocab_size": m.vocab_size, "convention": self.convention, "flops_per_token": self.flops_per_token,
            "flops": self.flops, "budget_error": self.flops / self.budget - 1,
        }  # fmt: skip


@dataclass(frozen=True)
class LeftOut:
    """A (budget, width) pair with no point, and why."""

    budget: float
    dim: int
    reason: str


@dataclass
class SweepPlan:
    points: list[SweepPoint]
    left_out: list[LeftOut]

    def budget_points(self, budget: float) -> list[SweepPoint]:
        return [p for p in self.points if p.budget == budget]


def plan_point(sweep: SweepConfig, budget: float, dim: int, base: DecoderConfig) -> SweepPoint | LeftOut:
    """The point of width ``dim`` on ``budget``, or why there is none."""
    try:
        model = sweep.rule.shape(dim, dataclasses.replace(base, max_seq_len=max(base.max_seq_len, sweep.seq_len)))
    except ConfigError as exc:
        return LeftOut(budget, dim, f"the rule gives no valid decoder: {exc}")
    per_token = convention_fn(sweep.convention)(model, sweep.seq_len)
    tokens_per_step = sweep.batch_size * sweep.seq_len
    steps = round(budget / (per_token * tokens_per_step))
    if steps < sweep.min_steps:
        need = sweep.min_steps * per_token * tokens_per_step
        return LeftOut(budget, dim, f"{steps} steps (< min_steps {sweep.min_steps}); needs a budget >= {need:.3g}")
    point = SweepPoint(budget=budget, model=model, steps=steps, batch_size=sweep.batch_size, seq_len=sweep.seq_len,
                       convention=sweep.convention, flops_per_token=per_token)  # fmt: skip
    error = point.flops / budget - 1
    if abs(error) > sweep.tolerance:
        reason = (
            f"{steps} steps give {point.flops:.4g} FLOPs ({error:+.2%} off, tolerance {sweep.tolerance:.2%}); "
            "a smaller batch size or a larger budget lands closer"
        )
        return LeftOut(budget, dim, reason)
    return point


def plan_sweep(sweep: SweepConfig, base: DecoderConfig) -> SweepPlan:
    """Every point of the sweep that lands within the tolerance of its budget, and the left-out ones.

    Args:
        sweep: budgets, widths, rule, convention, batch size and row length.
        base: the decoder whose other fields (``vocab_size`` above all: the corpus's) every point keeps.

    Raises:
        ValueError: when a budget has no point at all (the message gives each width's reason).
    """
    points, left_out = [], []
    for budget in sweep.budgets:
        for dim in sorted(sweep.dims):
            got = plan_point(sweep, budget, dim, base)
            (points if isinstance(got, SweepPoint) else left_out).append(got)
    plan = SweepPlan(points, left_out)
    empty = [c for c in sweep.budgets if not plan.budget_points(c)]
    if empty:
        first = next(x for x in left_out if x.budget == empty[0])
        budgets = ", ".join(f"{c:.4g}" for c in empty)
        raise ValueError(f"no valid model for budget(s) {budgets}: e.g. d={first.dim}: {first.reason}")
    for c in sweep.budgets:
        if len(plan.budget_points(c)) < 3:
            log.warning("budget %.4g has only %d point(s); an IsoFLOP fit needs >= 3", c, len(plan.budget_points(c)))
    return plan


# --- running --------------------------------------------------------------------------------------------------


def resolve_vocab(base: RunConfig) -> RunConfig:
    """A copy of the "lm" run config with ``model.vocab_size`` (and ``data.text_vocab_size``) from its corpus.

    Builds the tokenised corpus when it is missing (the cache makes later calls cheap).
    """
    if base.task != "lm":
        raise ConfigError(f"IsoFLOP sweeps train the 'lm' task; this config is task '{base.task}'")
    config = copy.deepcopy(base)
    task = build_task(config)
    task.prepare_data()
    task.layout()  # writes the corpus's sizes into config (or checks the ones it holds)
    return config


def point_config(base: RunConfig, point: SweepPoint) -> RunConfig:
    """The run config of ``point``: ``base`` with its decoder, steps and batch size; eval only at the end."""
    if base.data.seq_len != point.seq_len:
        raise ConfigError(f"point planned for seq_len {point.seq_len}, but data.seq_len is {base.data.seq_len}")
    if base.model.vocab_size != point.model.vocab_size:
        raise ConfigError(f"point planned for vocab_size {point.model.vocab_size}, base has {base.model.vocab_size}")
    config = copy.deepcopy(base)
    config.model = point.model
    # The engine always evaluates after the last step: that eval is the point's held-out loss.
    config.train = dataclasses.replace(config.train, steps=point.steps, batch_size=point.batch_size, eval_every=0)
    return config


def _final_loss(run_dir: Path, steps: int) -> float | None:
    """The held-out ``nll`` logged at the final step, or None."""
    records = [r for r in read_metrics(run_dir, "eval") if r.get("step") == steps and "nll" in r]
    return float(records[-1]["nll"]) if records else None


def _finished_step(run_dir: Path) -> int:
    latest = ckpt.latest_checkpoint(run_dir)
    return int(latest.name.removeprefix("step-")) if latest is not None else 0


#: Run settings that do not change what a run computes: a rerun may change them.
_COSMETIC = {"train.progress", "train.tensorboard", "train.num_workers", "train.log_every", "train.ckpt_every",
             "train.keep_checkpoints"}  # fmt: skip


def _check_same_config(run_dir: Path, config: RunConfig) -> None:
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        return
    diff = sorted(set(_diff_keys(to_dict(load_run_config(saved_path)), to_dict(config))) - _COSMETIC)
    if diff:
        raise ConfigError(f"{run_dir} holds a run with another config (differs at {', '.join(diff[:5])}); "
                          "use another --out or remove it")  # fmt: skip


def _diff_keys(a: object, b: object, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [k for key in keys for k in _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def run_point(base: RunConfig, point: SweepPoint, run_dir: Path) -> tuple[float, bool]:
    """Train ``point`` into ``run_dir`` unless finished; returns (final held-out nll, whether it trained now)."""
    config = point_config(base, point)
    _check_same_config(run_dir, config)
    if _finished_step(run_dir) >= point.steps:
        loss = _final_loss(run_dir, point.steps)
        if loss is None:
            raise ValueError(f"{run_dir} is finished but its metrics.jsonl has no final eval nll; remove it to retrain")
        return loss, False
    result = train(build_task(config), run_dir, resume=True)
    if "nll" not in result.eval_metrics:
        raise ValueError(f"{run_dir}: no held-out nll after training (does the corpus have a 'valid' split?)")
    return float(result.eval_metrics["nll"]), True


@dataclass
class SweepResult:
    rows: list[dict[str, object]]
    trained: int
    skipped: int
    failed: list[tuple[SweepPoint, str]]


def run_sweep(plan: SweepPlan, base: RunConfig, out_dir: str | Path, *, progress: bool = True) -> SweepResult:
    """Train every point of ``plan`` (resumably) and write ``out_dir/table.csv`` and ``table.jsonl``.

    Args:
        plan: from :func:`plan_sweep` on ``base.model`` (with the corpus's vocabulary, see :func:`resolve_vocab`).
        base: the "lm" run config every point starts from.
        out_dir: the sweep folder; runs go to ``out_dir/runs/<point name>``.
        progress: show a bar over the points.

    A point whose training diverges (or ends with a non-finite loss) is reported in ``failed`` and left out of
    the table; the others go on.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(out_dir / "plan.csv", [{**p.row(), "run_dir": str(out_dir / "runs" / p.name)} for p in plan.points],
                columns=[c for c in COLUMNS if c != "loss"])  # fmt: skip
    rows: list[dict[str, object]] = []
    result = SweepResult(rows=rows, trained=0, skipped=0, failed=[])
    for point in tqdm(plan.points, desc="sweep", disable=not progress, dynamic_ncols=True):
        run_dir = out_dir / "runs" / point.name
        try:
            loss, trained = run_point(base, point, run_dir)
        except TrainingDiverged as exc:
            log.warning("%s diverged: %s", point.name, exc)
            result.failed.append((point, str(exc)))
            continue
        if not math.isfinite(loss):
            log.warning("%s: non-finite held-out loss %s; left out of the table", point.name, loss)
            result.failed.append((point, f"non-finite held-out loss {loss}"))
            continue
        result.trained += trained
        result.skipped += not trained
        log.info("%s: %s, held-out nll %.4f", point.name, "trained" if trained else "already done", loss)
        rows.append({**point.row(), "loss": loss, "run_dir": str(run_dir)})
        write_table(out_dir / "table.csv", rows)  # after every point: a killed sweep keeps what it finished
        write_jsonl(out_dir / "table.jsonl", rows)
    write_table(out_dir / "table.csv", rows)
    write_jsonl(out_dir / "table.jsonl", rows)
    return result
