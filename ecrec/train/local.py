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

import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecrec.data.schema import USER_ID
from ecrec.errors import ConfigError, DataError
from ecrec.model.ranker import Ranker, resolve_device

GradSampleMode = Literal["hooks", "ghost"]
Unit = Literal["user", "row"]


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
        if self.grad_sample_mode not in ("hooks", "ghost"):
            raise ConfigError(
                f'train.grad-sample-mode must be "hooks" or "ghost", got {self.grad_sample_mode!r}'
            )


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


# --------------------------------------------------------------------------- DP units


@dataclass(frozen=True)
class DPUnits:
    """Which rows train, and which DP unit (shopper or row) each belongs to."""

    rows: np.ndarray  # indices into the frame of the rows kept
    unit_of_row: np.ndarray  # unit index 0..n_units-1 for each kept row
    n_units: int
    unit: Unit


def dp_units(frame: pd.DataFrame, *, unit: Unit, max_rows_per_user: int = 32) -> DPUnits:
    """Group a merchant's rows into DP units.

    ``"row"``: every impression is its own unit. ``"user"``: all of a shopper's rows
    (``user_id_hash``) form one unit, at most ``max_rows_per_user`` of them; which rows
    a heavy shopper keeps is a fixed choice seeded by the shopper's id hash, so every
    round trains on the same rows and nobody outside the node can steer it.
    """
    n = len(frame)
    if unit == "row":
        idx = np.arange(n)
        return DPUnits(rows=idx, unit_of_row=idx.copy(), n_units=n, unit="row")
    if USER_ID not in frame.columns:
        raise DataError(f"privacy unit 'user' needs a {USER_ID} column (shopper ids)")
    users = frame[USER_ID].astype(str).to_numpy()
    if (users == "").any() or pd.isna(frame[USER_ID]).any():
        raise DataError(f"privacy unit 'user': some rows have no {USER_ID}")
    keep: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    codes, uniques = pd.factorize(users, sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for u, user in enumerate(uniques):
        rows = order[bounds[u] : bounds[u + 1]]
        if len(rows) > max_rows_per_user:
            rows = np.sort(rows[_keep_order(frame, rows, str(user))[:max_rows_per_user]])
        keep.append(rows)
        owner.append(np.full(len(rows), u))
    return DPUnits(
        rows=np.concatenate(keep),
        unit_of_row=np.concatenate(owner),
        n_units=len(uniques),
        unit="user",
    )


def _keep_order(frame: pd.DataFrame, rows: np.ndarray, user: str) -> np.ndarray:
    """A fixed order of one shopper's rows, from a hash of the shopper and each row's
    content (query and product): the rows kept never depend on where they sit in the file."""
    columns = [c for c in ("query_id", "product_id", "query", "product_title") if c in frame]
    parts = frame.iloc[rows][columns].astype(str).agg("\x1f".join, axis=1)
    keys = [hashlib.sha256(f"{user}\x1f{text}".encode()).digest() for text in parts]
    return np.array(sorted(range(len(rows)), key=keys.__getitem__))


# --------------------------------------------------------------------------- secure noise


def csprng_normal(shape: tuple[int, ...], *, std: float, device: Any, dtype: Any) -> Any:
    """Gaussian noise N(0, std²) drawn from the operating system's CSPRNG.

    Hand-written because Opacus' ``secure_mode`` needs ``torchcsprng``, which no longer
    builds for current torch. Uniforms come from ``os.urandom`` (53-bit), normals from
    Box-Muller in float64, and -- as Opacus' secure mode does against floating-point
    attacks (Holohan & Braghin, arXiv:2107.10138) -- each value is the sum of four
    draws divided by two.
    """
    import torch

    count = int(np.prod(shape)) if shape else 1
    raw = np.frombuffer(os.urandom(8 * 4 * count), dtype=np.uint64)
    uniform = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u1, u2 = uniform[: 2 * count], uniform[2 * count :]
    radius = np.sqrt(-2.0 * np.log(u1))
    normals = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
    value = normals.reshape(4, count).sum(axis=0) / 2.0 * std
    return torch.from_numpy(value.reshape(shape)).to(device=device, dtype=dtype)


def _use_secure_noise(optimizer: Any) -> None:
    """Make an Opacus DP optimizer draw its noise from :func:`csprng_normal`."""
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    base = type(optimizer)

    class SecureNoise(base):  # type: ignore[misc, valid-type]
        def add_noise(self) -> None:  # same contract as Opacus' DPOptimizer.add_noise
            for p in self.params:
                _check_processed_flag(p.summed_grad)
                noise = csprng_normal(
                    tuple(p.summed_grad.shape),
                    std=self.noise_multiplier * self.max_grad_norm,
                    device=p.summed_grad.device,
                    dtype=p.summed_grad.dtype,
                )
                p.grad = (p.summed_grad + noise).view_as(p)
                _mark_as_processed(p.summed_grad)

    SecureNoise.__name__ = f"SecureNoise{base.__name__}"
    optimizer.__class__ = SecureNoise


# --------------------------------------------------------------------------- training


def _fresh_seed() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1


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
    started = time.perf_counter()
    run = _Steps(
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


@dataclass
class _Steps:
    """The step loop shared by the three ways of training (plain, per-unit DP, ghost)."""

    inputs: dict[str, Any]
    targets: Any
    device: str
    steps: int
    on_step: Callable[[int, int, float], None] | None
    proximal: tuple[list[Any], list[Any], float] | None

    def _batch(self, rows: Any) -> tuple[dict[str, Any], Any]:
        return {k: v[rows].to(self.device) for k, v in self.inputs.items()}, self.targets[rows].to(
            self.device
        )

    def _after_step(self, step: int, loss: float, losses: list[float]) -> None:
        import torch

        if self.proximal is not None:
            # FedProx's pull w -= lr*mu*(w - w0), applied after the DP step (hand-written:
            # under DP a proximal term in the loss would be dropped, since only clipped
            # per-sample data gradients survive; the pull uses no data, so it is
            # post-processing and costs no privacy).
            params, anchor, rate = self.proximal
            with torch.no_grad():
                for param, start in zip(params, anchor, strict=True):
                    param.sub_(rate * (param - start))
        losses.append(loss)
        if self.on_step is not None:
            self.on_step(step, self.steps, loss)

    def _unit_batches(self, loader: Any) -> Iterator[Any]:
        """Exactly ``steps`` Poisson batches, cycling the loader."""
        produced = 0
        while produced < self.steps:
            for batch in loader:
                if produced >= self.steps:
                    return
                produced += 1
                yield batch

    def plain(self, module: Any, optimizer: Any, *, batch_size: int, seed: int) -> list[float]:
        """Non-private baseline training: shuffled mini-batches, mean BCE."""
        import torch
        from torch.utils.data import DataLoader

        n = len(self.targets)
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(
            range(n), batch_size=min(batch_size, n), shuffle=True, generator=generator
        )
        criterion = torch.nn.BCEWithLogitsLoss()
        losses: list[float] = []
        for step, rows in enumerate(self._unit_batches(loader), 1):
            batch, target = self._batch(rows)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(module(**batch), target)
            loss.backward()
            optimizer.step()
            self._after_step(step, float(loss.detach()), losses)
        return losses

    def per_unit(
        self,
        module: Any,
        optimizer: Any,
        groups: DPUnits,
        *,
        config: TrainConfig,
        sigma: float,
        seed: int,
    ) -> list[float]:
        """DP-SGD where one DP sample is one unit (a shopper's rows, or one row).

        Opacus' hooks give per-row gradients; rows of the same unit are summed into
        one per-unit gradient (hand-written: Opacus has no notion of a sample spanning
        several rows) and Opacus' DP optimizer then clips each unit once, adds the
        noise and averages over the expected number of units.
        """
        import torch
        from opacus.data_loader import DPDataLoader
        from opacus.grad_sample import GradSampleModule
        from opacus.optimizers import DPOptimizer
        from torch.utils.data import DataLoader, TensorDataset

        unit_loader = DataLoader(
            TensorDataset(torch.arange(groups.n_units)),
            batch_size=min(config.batch_size, groups.n_units),
            generator=torch.Generator().manual_seed(seed),
        )
        poisson = DPDataLoader.from_data_loader(unit_loader)
        expected = max(1, int(groups.n_units * poisson.sample_rate))
        rows_of_unit = _rows_by_unit(groups)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Secure RNG.*")
            gsm = GradSampleModule(module, batch_first=True, loss_reduction="sum", strict=False)
            dp_optimizer = DPOptimizer(
                optimizer,
                noise_multiplier=sigma,
                max_grad_norm=config.max_grad_norm,
                expected_batch_size=expected,
                loss_reduction="mean",
                generator=torch.Generator(device=self.device).manual_seed(seed + 1)
                if config.seed is not None
                else None,
            )
        if config.seed is None:
            _use_secure_noise(dp_optimizer)
        criterion = torch.nn.BCEWithLogitsLoss(reduction="sum")
        trainable = [p for p in module.parameters() if p.requires_grad]
        losses: list[float] = []
        try:
            with warnings.catch_warnings():
                # Expected when only adapters train (inputs need no grad); not actionable.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                for step, (units,) in enumerate(self._unit_batches(poisson), 1):
                    dp_optimizer.zero_grad(set_to_none=True)
                    if len(units) == 0:
                        # An empty Poisson batch: the step would release only noise.
                        # Skipping it is conservative (the ledger still counts it).
                        continue
                    rows = torch.cat([rows_of_unit[int(u)] for u in units])
                    owner = torch.cat(
                        [torch.full((len(rows_of_unit[int(u)]),), i) for i, u in enumerate(units)]
                    ).to(self.device)
                    batch, target = self._batch(rows)
                    loss = criterion(gsm(**batch), target)
                    loss.backward()
                    for p in trainable:
                        per_row = p.grad_sample
                        p.grad_sample = torch.zeros(
                            (len(units), *per_row.shape[1:]),
                            dtype=per_row.dtype,
                            device=per_row.device,
                        ).index_add_(0, owner, per_row)
                    dp_optimizer.step()
                    self._after_step(step, float(loss.detach()) / len(rows), losses)
        finally:
            gsm._close()
            for param in trainable:
                param.grad = None  # the last noisy gradient must not linger on the model
        return losses

    def ghost(
        self, module: Any, optimizer: Any, *, config: TrainConfig, sigma: float, seed: int
    ) -> list[float]:
        """Row-level DP-SGD with Opacus' ghost clipping (no per-sample gradients stored)."""
        import torch
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        names = list(self.inputs)
        dataset = TensorDataset(*(self.inputs[k] for k in names), self.targets)
        loader = DataLoader(
            dataset,
            batch_size=min(config.batch_size, len(dataset)),
            generator=torch.Generator().manual_seed(seed),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Secure RNG.*")
            engine = PrivacyEngine(accountant="rdp")
        wrapped, dp_optimizer, criterion, poisson = engine.make_private(
            module=_Positional(module, names),
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode="ghost",
            criterion=torch.nn.BCEWithLogitsLoss(),
            noise_generator=torch.Generator(device=self.device).manual_seed(seed + 1)
            if config.seed is not None
            else None,
        )
        if config.seed is None:
            _use_secure_noise(dp_optimizer)
        losses: list[float] = []
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                for step, (*tensors, target) in enumerate(self._unit_batches(poisson), 1):
                    dp_optimizer.zero_grad(set_to_none=True)
                    if len(target) == 0:
                        continue
                    loss = criterion(
                        wrapped(*(t.to(self.device) for t in tensors)), target.to(self.device)
                    )
                    loss.backward()
                    dp_optimizer.step()
                    self._after_step(step, float(loss.detach()), losses)
        finally:
            remove = getattr(wrapped, "_close", None) or getattr(wrapped, "remove_hooks", None)
            if remove is not None:
                remove()
            for param in module.parameters():
                param.grad = None
        return losses


def _rows_by_unit(groups: DPUnits) -> list[Any]:
    import torch

    order = np.argsort(groups.unit_of_row, kind="stable")
    bounds = np.searchsorted(groups.unit_of_row[order], np.arange(groups.n_units + 1))
    return [torch.as_tensor(order[bounds[u] : bounds[u + 1]]) for u in range(groups.n_units)]


def _positional_module(module: Any, names: list[str]) -> Any:
    import torch

    class Positional(torch.nn.Module):
        """Opacus' ghost clipping feeds a batch positionally; the ranker takes keywords."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(names, tensors, strict=True)))

    return Positional()


_Positional = _positional_module
