"""One merchant's local training round under DP-SGD (Opacus).

The caller decides the noise multiplier (from a target ε or an explicit value)
and checks the privacy ledger *before* calling :func:`train_local`, using the
``(sample_rate, steps)`` that :func:`plan_round` promises; training then takes
exactly that many Poisson-sampled steps, so the ledger entry is exact.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecrec.data.schema import ranker_documents
from ecrec.errors import ConfigError, DataError
from ecrec.model.ranker import Ranker, resolve_device

GradSampleMode = Literal["hooks", "ghost"]


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
    dp: bool = field(default=True, metadata={"help": "train with DP-SGD; false only for baselines"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "per-sample clipping norm C"})
    grad_sample_mode: GradSampleMode = field(
        default="hooks", metadata={"help": '"hooks" (per-sample grads) or "ghost" (ghost clipping)'}
    )
    secure_rng: bool = field(
        default=False,
        metadata={"help": "cryptographically secure noise (Opacus secure_mode; slower)"},
    )
    device: str = field(default="auto", metadata={"help": '"auto", "cpu" or "cuda"'})
    seed: int | None = field(
        default=None,
        metadata={
            "help": "unset (default): fresh OS entropy for Poisson sampling and DP noise every "
            "round. A fixed seed makes runs repeatable for tests and benchmarks, but anyone who "
            "knows it can predict the noise: never set it for real training"
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
        if self.grad_sample_mode not in ("hooks", "ghost"):
            raise ConfigError(
                f'train.grad-sample-mode must be "hooks" or "ghost", got {self.grad_sample_mode!r}'
            )


@dataclass
class TrainResult:
    """What a round of local training did; everything the ledger needs."""

    examples: int
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
        return self.sample_rate * self.examples * self.steps / max(self.seconds, 1e-9)


def plan_round(n_examples: int, config: TrainConfig) -> tuple[float, int]:
    """The ``(sample_rate, steps)`` a round on ``n_examples`` rows will take."""
    if n_examples < 1:
        raise DataError("no training examples")
    sample_rate = min(1.0, config.batch_size / n_examples)
    if config.local_steps is not None:
        return sample_rate, int(config.local_steps)
    # Exact rational arithmetic: 1 / (1/49) is 49.000000000000001 in floats, and
    # an extra step would spend ε nobody planned for.
    epochs = Fraction(config.local_epochs).limit_denominator(1_000_000)
    steps_per_epoch = Fraction(n_examples, min(config.batch_size, n_examples))
    return sample_rate, max(1, math.ceil(epochs * steps_per_epoch))


class _LogitsModule:
    """Factory for an ``nn.Module`` mapping token tensors to ``[B]`` logits.

    Opacus wraps this module; the peft model inside stays the Ranker's own, so
    adapter state is read without Opacus's ``_module.`` prefix.
    """

    @staticmethod
    def build(ranker: Ranker) -> Any:
        import torch

        class LogitsModule(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.ranker_model = ranker.model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                out = self.ranker_model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                )
                return out.logits.squeeze(-1)

        return LogitsModule()


def train_local(
    ranker: Ranker,
    frame: pd.DataFrame,
    *,
    config: TrainConfig,
    noise_multiplier: float | None = None,
    proximal_mu: float = 0.0,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train ``ranker``'s adapters in place on one merchant's impressions.

    ``noise_multiplier`` is required when ``config.dp`` is on. ``proximal_mu``
    > 0 applies FedProx's pull towards the starting (global) weights.
    ``on_step(step, total, loss)`` is called after every step (progress bars).
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    if config.dp and (noise_multiplier is None or not noise_multiplier > 0):
        raise ConfigError("DP training needs a noise multiplier > 0 (or set train.dp = false)")
    for column in ("query", "product_title", "product_text", "label"):
        if column not in frame.columns:
            raise DataError(f"training data has no {column!r} column")
    n = len(frame)
    sample_rate, steps = plan_round(n, config)
    # DP needs noise and batch sampling nobody can predict: fresh entropy per call
    # unless a seed was set on purpose (tests, benchmarks).
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(7), "big")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    device = resolve_device(config.device)
    ranker.model.to(device)
    enc = ranker.encode(frame["query"].astype(str).tolist(), ranker_documents(frame))
    labels = torch.as_tensor(frame["label"].to_numpy(dtype=np.float32))
    dataset = TensorDataset(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], labels)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator)

    module = _LogitsModule.build(ranker).to(device)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params] if proximal_mu > 0 else None
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    criterion: Any = torch.nn.BCEWithLogitsLoss()
    engine_module: Any = module
    if config.dp:
        from opacus import PrivacyEngine

        with warnings.catch_warnings():
            # secure_mode=False is a documented choice (config.secure_rng turns it on).
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            engine = PrivacyEngine(accountant="rdp", secure_mode=config.secure_rng)
        kwargs: dict[str, Any] = dict(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=float(noise_multiplier),  # type: ignore[arg-type]
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=config.grad_sample_mode,
            noise_generator=None
            if config.secure_rng
            else torch.Generator(device=device).manual_seed(seed + 1),
        )
        if config.grad_sample_mode == "ghost":
            engine_module, optimizer, criterion, loader = engine.make_private(
                criterion=criterion, **kwargs
            )
        else:
            engine_module, optimizer, loader = engine.make_private(**kwargs)

    started = time.perf_counter()
    try:
        losses = _run_steps(
            engine_module,
            optimizer,
            criterion,
            loader,
            steps=steps,
            device=device,
            on_step=on_step,
            proximal=(params, anchor, proximal_mu * config.learning_rate) if anchor else None,
        )
    finally:
        if config.dp:
            _detach_opacus(engine_module, module)
    return TrainResult(
        examples=n,
        steps=steps,
        sample_rate=sample_rate,
        noise_multiplier=float(noise_multiplier) if config.dp else 0.0,
        dp=config.dp,
        losses=losses,
        seconds=time.perf_counter() - started,
    )


def _run_steps(
    model: Any,
    optimizer: Any,
    criterion: Any,
    loader: Any,
    *,
    steps: int,
    device: str,
    on_step: Callable[[int, int, float], None] | None,
    proximal: tuple[list[Any], list[Any], float] | None = None,
) -> list[float]:
    """Take exactly ``steps`` optimizer steps, cycling the (Poisson) loader.

    FedProx's proximal term is applied as a separate step ``w -= lr*mu*(w - w0)``
    after each optimizer step (hand-written: under Opacus a proximal term in the
    loss would be dropped, since only clipped per-sample data gradients survive;
    the pull uses no data, so it is DP post-processing and costs no privacy).
    """
    import torch

    losses: list[float] = []
    step = 0
    with warnings.catch_warnings():
        # Expected when only adapters train (inputs need no grad); not actionable.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        while step < steps:
            for input_ids, attention_mask, token_type_ids, target in loader:
                if step >= steps:
                    break
                step += 1
                optimizer.zero_grad(set_to_none=True)
                if len(target) == 0:
                    # An empty Poisson batch: the DP step would release only noise.
                    # Skipping it is conservative (the ledger still counts it).
                    continue
                logits = model(
                    input_ids.to(device), attention_mask.to(device), token_type_ids.to(device)
                )
                loss = criterion(logits, target.to(device))
                loss.backward()
                optimizer.step()
                if proximal is not None:
                    params, anchor, rate = proximal
                    with torch.no_grad():
                        for param, start in zip(params, anchor, strict=True):
                            param.sub_(rate * (param - start))
                losses.append(float(loss.detach()))
                if on_step is not None:
                    on_step(step, steps, losses[-1])
    return losses


def _detach_opacus(wrapped: Any, module: Any) -> None:
    """Remove Opacus hooks and per-sample buffers so later scoring is plain."""
    remove = getattr(wrapped, "_close", None) or getattr(wrapped, "remove_hooks", None)
    if remove is not None:
        remove()
    for param in module.parameters():
        for attr in ("grad_sample", "_forward_counter", "_current_grad_sample"):
            if hasattr(param, attr):
                delattr(param, attr)
        param.grad = None
