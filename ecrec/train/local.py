"""One merchant's local training round under DP-SGD (Opacus).

The caller (the merchant's node) decides the noise multiplier and checks the
privacy ledger *before* calling :func:`train_local`, using the
``(sample_rate, steps)`` that :func:`plan_round` promises; training then takes
exactly that many Poisson-sampled steps, so the ledger entry is exact.

The DP unit is a shopper (all of that shopper's rows, summed and clipped once)
or a single impression row: :func:`dp_units` groups the rows, and the sampling
rate is over units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecrec.errors import ConfigError, DataError
from ecrec.model.ranker import Ranker, resolve_device
from ecrec.train.noise import _fresh_seed, csprng_normal
from ecrec.train.steps import _Steps
from ecrec.train.units import DPUnits, Unit, dp_units

GradSampleMode = Literal["hooks", "ghost"]
LearningRateSchedule = Literal["constant", "linear", "cosine"]


@dataclass(frozen=True)
class TrainConfig:
    """Local training hyper-parameters (one merchant, one round)."""

    local_epochs: float = field(
        default=1.0,
        metadata={"help": "passes over local data per round (if local-steps unset)"},
    )
    local_steps: int | None = field(
        default=None, metadata={"help": "optimizer steps per round; overrides local-epochs"}
    )
    batch_size: int = field(default=32, metadata={"help": "expected (Poisson) batch size"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    lr_schedule: LearningRateSchedule = field(
        default="constant",
        metadata={
            "help": '"constant", "linear" or "cosine" decay over a round\'s local steps '
            "(after the warm-up); a schedule uses no data, so it costs no privacy"
        },
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "local steps of linear learning-rate warm-up per round"}
    )
    dp: bool = field(default=True, metadata={"help": "train with DP-SGD; false only for baselines"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "per-unit clipping norm C"})
    grad_sample_mode: GradSampleMode = field(
        default="hooks",
        metadata={"help": '"hooks" (per-sample grads) or "ghost" (ghost clipping, row unit only)'},
    )
    device: str = field(default="auto", metadata={"help": '"auto", "cpu" or "cuda"'})
    seed: int | None = field(
        default=None,
        metadata={
            "help": "unset (default): DP noise from the OS CSPRNG and sampling from fresh OS "
            "entropy every round. A fixed seed makes runs repeatable for tests and benchmarks, "
            "but anyone who knows it can predict the noise: nodes refuse it unless their "
            "policy allows it"
        },
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"train.batch-size must be >= 1, got {self.batch_size}")
        if self.local_steps is not None and self.local_steps < 1:
            raise ConfigError(f"train.local-steps must be >= 1, got {self.local_steps}")
        if self.local_steps is None and not self.local_epochs > 0:
            raise ConfigError(f"train.local-epochs must be > 0, got {self.local_epochs}")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"train.max-grad-norm must be > 0, got {self.max_grad_norm}")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ConfigError(
                'train.lr-schedule must be "constant", "linear" or "cosine", '
                f"got {self.lr_schedule!r}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.grad_sample_mode not in ("hooks", "ghost"):
            raise ConfigError(
                f'train.grad-sample-mode must be "hooks" or "ghost", got {self.grad_sample_mode!r}'
            )


def learning_rate_factor(
    step: int, *, steps: int, warmup: int, schedule: LearningRateSchedule
) -> float:
    """The multiple of ``learning-rate`` used at local step ``step`` (0-based) of ``steps``:
    linear warm-up over ``warmup`` steps, then constant, linear or cosine decay that stays
    above zero on the last step."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """What a round of local training did; everything the ledger needs."""

    examples: int
    units: int
    unit: Unit
    steps: int
    sample_rate: float
    noise_multiplier: float  # 0.0 when DP is off
    dp: bool
    losses: list[float]
    seconds: float

    @property
    def mean_loss(self) -> float:
        return float(np.mean(self.losses)) if self.losses else math.nan

    @property
    def samples_per_second(self) -> float:
        """Expected rows trained on per second (units sampled x rows per unit)."""
        rows_per_unit = self.examples / max(1, self.units)
        return self.sample_rate * self.units * rows_per_unit * self.steps / max(self.seconds, 1e-9)


def plan_round(n_examples: int, config: TrainConfig) -> tuple[float, int]:
    """The ``(sample_rate, steps)`` a round on ``n_examples`` rows (DP units) will take.

    The rate is the one Opacus' Poisson loader really samples at:
    ``DPDataLoader.from_data_loader`` uses 1 / len(data_loader) = 1 / ceil(n / B), not
    B / n (n=100, B=32: 0.25, not 0.32), and the ledger must record the rate used. An
    epoch is 1 / q = ceil(n / B) steps, the loader's length, so ``local_epochs`` passes
    are ``local_epochs`` times n examples in expectation.
    """
    if n_examples < 1:
        raise DataError("no training examples")
    batches_per_epoch = -(-n_examples // config.batch_size)  # ceil(n / B), exactly
    sample_rate = 1 / batches_per_epoch  # the same float Opacus computes
    if config.local_steps is not None:
        return sample_rate, int(config.local_steps)
    # Exact rational arithmetic: 0.14 * 50 is 7.000000000000001 in floats, and an
    # extra step would spend ε nobody planned for.
    epochs = Fraction(config.local_epochs).limit_denominator(1_000_000)
    return sample_rate, max(1, math.ceil(epochs * batches_per_epoch))


def train_local(
    ranker: Ranker,
    frame: pd.DataFrame,
    *,
    config: TrainConfig,
    noise_multiplier: float | None = None,
    unit: Unit = "row",
    max_rows_per_user: int = 32,
    proximal_mu: float = 0.0,
    on_step: Callable[[int, int, float], None] | None = None,
    encode: Callable[[pd.DataFrame], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train ``ranker``'s adapters in place on one merchant's impressions.

    ``encode`` turns the rows that train into the ranker's input tensors (default
    ``ranker.training_inputs``); a node passes a cached one, so it tokenises once.

    With ``config.dp`` (the default) this is DP-SGD: Poisson sampling of DP units at
    exactly the rate :func:`plan_round` promises, per-unit clipping to
    ``config.max_grad_norm`` (a shopper's rows are summed, then clipped once), and
    Gaussian noise ``noise_multiplier * max_grad_norm``. Without a ``config.seed`` the
    noise comes from the OS CSPRNG and sampling from a generator seeded by fresh OS
    entropy every call; a seed (tests, benchmarks) makes both repeatable -- and
    predictable to whoever knows it.
    """
    import torch

    if config.dp and (noise_multiplier is None or not noise_multiplier > 0):
        raise ConfigError("DP training needs a noise multiplier > 0 (or set train.dp = false)")
    for column in ("query", "product_title", "product_text", "label"):
        if column not in frame.columns:
            raise DataError(f"training data has no {column!r} column")
    groups = dp_units(frame, unit=unit if config.dp else "row", max_rows_per_user=max_rows_per_user)
    sample_rate, steps = plan_round(groups.n_units, config)
    seed = config.seed if config.seed is not None else _fresh_seed()
    torch.manual_seed(seed)
    device = resolve_device(config.device)
    ranker.model.to(device)
    kept = frame.iloc[groups.rows]
    inputs = (encode or ranker.training_inputs)(kept)
    targets = torch.as_tensor(ranker.training_targets(kept))
    module = ranker.logits_module().to(device)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if proximal_mu > 0 else None
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: learning_rate_factor(
            step, steps=steps, warmup=config.warmup_steps, schedule=config.lr_schedule
        ),
    )
    started = time.perf_counter()
    run = _Steps(
        schedule=schedule,
        inputs=inputs,
        targets=targets,
        device=device,
        steps=steps,
        on_step=on_step,
        proximal=(params, anchor, proximal_mu * config.learning_rate) if anchor else None,
    )
    if not config.dp:
        losses = run.plain(module, optimizer, batch_size=config.batch_size, seed=seed)
    elif config.grad_sample_mode == "ghost":
        if groups.unit != "row":
            raise ConfigError('train.grad-sample-mode = "ghost" supports only privacy.unit = "row"')
        if getattr(ranker, "reuses_modules", False):
            # Ghost clipping takes each layer's norm per forward pass; a row that runs the
            # encoder twice (query and product tower) would be clipped wrongly.
            raise ConfigError(
                'train.grad-sample-mode = "ghost" does not support model.architecture = '
                '"bi-encoder" (its towers share the encoder); use "hooks"'
            )
        losses = run.ghost(
            module, optimizer, config=config, sigma=float(noise_multiplier), seed=seed
        )
    else:
        losses = run.per_unit(
            module, optimizer, groups, config=config, sigma=float(noise_multiplier), seed=seed
        )
    return TrainResult(
        examples=len(frame),
        units=groups.n_units,
        unit=groups.unit,
        steps=steps,
        sample_rate=sample_rate,
        noise_multiplier=float(noise_multiplier) if config.dp else 0.0,
        dp=config.dp,
        losses=losses,
        seconds=time.perf_counter() - started,
    )


__all__ = [
    "DPUnits",
    "GradSampleMode",
    "TrainConfig",
    "TrainResult",
    "Unit",
    "csprng_normal",
    "dp_units",
    "plan_round",
    "train_local",
]
