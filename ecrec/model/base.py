"""What every ranker architecture shares: scoring an impressions frame and the sizes and
parameters of what federation trains and sends.

A subclass sets ``self.model`` (an ``nn.Module`` holding every weight) and implements
``score(queries, texts, ...)``, ``adapter_state()`` and the training interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class RankerBase(ABC):
    """Shared by the cross-encoder, the hybrid and the bi-encoder."""

    model: Any

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @abstractmethod
    def score(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Relevance logits of (query, product text) pairs, float32."""

    @abstractmethod
    def adapter_state(self) -> dict[str, np.ndarray]:
        """What federation sends: the trained weights as named float32 arrays."""

    def score_frame(
        self, frame: Any, *, batch_size: int = 64, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Relevance scores of every (query, product) row of an impressions frame."""
        from ecrec.data.schema import ranker_documents

        return self.score(
            frame["query"].astype(str).tolist(),
            ranker_documents(frame),
            batch_size=batch_size,
            on_batch=on_batch,
        )

    def adapter_nbytes(self) -> int:
        """Bytes of one adapter update on the wire (float32)."""
        return int(sum(a.nbytes for a in self.adapter_state().values()))

    def full_model_nbytes(self) -> int:
        """Bytes of the whole model in float32, for comparison with an update."""
        return int(sum(p.numel() * 4 for p in self.model.parameters()))

    def trainable_parameters(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]


__all__ = ["RankerBase"]
