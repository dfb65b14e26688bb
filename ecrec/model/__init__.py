"""The ranker: a BERT cross-encoder with LoRA adapters (peft)."""

from ecrec.model.ranker import Ranker, RankerConfig, build_ranker

__all__ = ["Ranker", "RankerConfig", "build_ranker"]
