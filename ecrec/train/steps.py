"""The step loops of one local round: plain, per-unit DP-SGD, and ghost clipping."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ecrec.train.noise import _use_secure_noise
from ecrec.train.units import DPUnits, _rows_by_unit

if TYPE_CHECKING:
    from ecrec.train.local import TrainConfig


@dataclass
class _Steps:
    """The step loop shared by the three ways of training (plain, per-unit DP, ghost)."""

    inputs: dict[str, Any]
    targets: Any
    device: str
    steps: int
    on_step: Callable[[int, int, float], None] | None
    proximal: tuple[list[Any], list[Any], float] | None
    schedule: Any = None  # a torch LR scheduler on the (inner) optimizer, stepped per step

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
        """Exactly ``steps`` Poisson batches, cycling the loader. The learning-rate schedule
        advances once per step, skipped (empty) batches included, so step k always
        trains at the schedule's k-th rate."""
        produced = 0
        while produced < self.steps:
            for batch in loader:
                if produced >= self.steps:
                    return
                if produced and self.schedule is not None:
                    with warnings.catch_warnings():  # an empty first batch took no step
                        warnings.filterwarnings("ignore", message="Detected call of")
                        self.schedule.step()
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
