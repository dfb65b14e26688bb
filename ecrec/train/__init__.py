"""Local (per-merchant) training with Opacus DP-SGD."""

from ecrec.train.local import TrainConfig, TrainResult, plan_round, train_local

__all__ = ["TrainConfig", "TrainResult", "plan_round", "train_local"]
