"""The bi-encoder ranker: one shared sentence encoder with LoRA adapters embeds the query
and the product separately, and the score is a learned affine map of their cosine.

Why this shape: its round 0 *is* the zero-shot embedding model (a positive scale of the
cosine ranks exactly as the cosine), so a merchant never starts below the model it could
download; training moves the encoder itself (LoRA on attention, as the cross-encoder
does) rather than only a head on frozen features (the hybrid). Product embeddings do not
depend on the query, so a catalogue is embedded once per model version and a query costs
one encoder pass plus dot products.

Under DP each row's gradient flows through the encoder twice (query tower and product
tower). Opacus' hooks accumulate both passes into the row's per-sample gradient (its
``create_or_accumulate_grad_sample``), so the per-row and per-shopper clipping of
:mod:`ecrec.train.steps` bound the whole row. Ghost clipping computes norms per pass and
is refused for this architecture.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ecrec.errors import ModelError
from ecrec.model.base import RankerBase
from ecrec.model.hybrid import INIT_BIAS, INIT_SCALE, load_encoder, mean_pool

if TYPE_CHECKING:
    from ecrec.model.ranker import RankerConfig

#: Prefix of the score head's entries in :meth:`BiEncoderRanker.adapter_state`.
HEAD_PREFIX = "score_head."


class BiEncoderRanker(RankerBase):
    """A LoRA-adapted shared encoder (two towers) and a one-weight score head."""

    #: Query and product are tokenised separately: no pair truncation.
    truncates_pairs = False
    #: Each row runs the encoder twice (see the module docstring on ghost clipping).
    reuses_modules = True

    def __init__(self, *, encoder: Any, tokenizer: Any, config: RankerConfig) -> None:
        import torch

        self.tokenizer = tokenizer
        self.config = config
        torch.manual_seed(config.seed)
        head = torch.nn.Linear(1, 1)
        with torch.no_grad():  # round 0: the zero-shot cosine on a sensible logit scale
            head.weight.fill_(INIT_SCALE)
            head.bias.fill_(INIT_BIAS)
        self.model = torch.nn.ModuleDict({"encoder": encoder, "head": head})

    # -- inputs ---------------------------------------------------------------

    def _tokens(self, texts: Sequence[str], *, pad_to_max: bool) -> dict[str, Any]:
        return dict(
            self.tokenizer(
                list(texts),
                padding="max_length" if pad_to_max else True,
                truncation=True,
                max_length=self.config.max_length,
                return_tensors="pt",
            )
        )

    def training_inputs(self, frame: Any) -> dict[str, Any]:
        """Query and product tokens of each row, padded to ``max_length`` (rows are
        sliced into batches, so every row needs the same width)."""
        from ecrec.data.schema import ranker_documents

        query = self._tokens(frame["query"].astype(str).tolist(), pad_to_max=True)
        product = self._tokens(ranker_documents(frame), pad_to_max=True)
        return {
            "query_ids": query["input_ids"],
            "query_mask": query["attention_mask"],
            "product_ids": product["input_ids"],
            "product_mask": product["attention_mask"],
        }

    def training_targets(self, frame: Any) -> np.ndarray:
        from ecrec.model.ranker import training_targets

        return training_targets(frame, graded=self.config.graded_targets)

    # -- the model ------------------------------------------------------------

    def _embed_tensors(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        hidden = self.model["encoder"](input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(hidden.last_hidden_state, attention_mask)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def logits_module(self) -> Any:
        """``(query tokens, product tokens) -> logits [B]``; Opacus wraps this."""
        import torch

        ranker = self

        class BiEncoderLogits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.ranker_model = ranker.model

            def forward(
                self, query_ids: Any, query_mask: Any, product_ids: Any, product_mask: Any
            ) -> Any:
                query = ranker._embed_tensors(query_ids, query_mask)
                product = ranker._embed_tensors(product_ids, product_mask)
                cosine = (query * product).sum(-1, keepdim=True)
                return self.ranker_model["head"](cosine).squeeze(-1)

        return BiEncoderLogits()

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-norm embeddings under the current adapters, each distinct text once."""
        import torch

        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                for t in texts]  # fmt: skip
        unique = dict(zip(keys, texts, strict=True))
        order = sorted(unique)
        vectors: dict[bytes, np.ndarray] = {}
        device = self.device
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda"
            else contextlib.nullcontext()
        )
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast:
                for start in range(0, len(order), batch_size):
                    chunk = order[start : start + batch_size]
                    enc = self._tokens([unique[k] for k in chunk], pad_to_max=False)
                    enc = {k: v.to(device) for k, v in enc.items()}
                    pooled = self._embed_tensors(enc["input_ids"], enc["attention_mask"])
                    for key, row in zip(chunk, pooled.float().cpu().numpy(), strict=True):
                        vectors[key] = row
        finally:
            self.model.train(was_training)
        if not keys:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([vectors[k] for k in keys])

    def score(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Relevance logits of (query, product text) pairs, float32. Each distinct query
        and product text is embedded once per call (a catalogue: once per model)."""
        import torch

        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} product texts")
        out: list[np.ndarray] = []
        head = self.model["head"]
        step = max(1, batch_size) * 16
        for start in range(0, len(queries), step):
            q = self.embed(queries[start : start + step], batch_size=batch_size)
            d = self.embed(texts[start : start + step], batch_size=batch_size)
            cosine = torch.as_tensor(np.sum(q * d, axis=1, keepdims=True), device=self.device)
            with torch.inference_mode():
                out.append(head(cosine).squeeze(-1).float().cpu().numpy())
            if on_batch is not None:
                on_batch(len(q))
        if not out:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    # -- adapter state: what federation sends ---------------------------------

    def adapter_state(self) -> dict[str, np.ndarray]:
        """The encoder's LoRA weights (peft's state dict) and the score head, float32."""
        from peft import get_peft_model_state_dict

        state = {
            name: tensor.detach().float().cpu().numpy().copy()
            for name, tensor in get_peft_model_state_dict(self.model["encoder"]).items()
        }
        for name, tensor in self.model["head"].state_dict().items():
            state[HEAD_PREFIX + name] = tensor.detach().float().cpu().numpy().copy()
        return state

    def load_adapter_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load adapters and head; refuses missing, unexpected, mis-shaped or non-finite
        entries before touching the model."""
        import torch
        from peft import set_peft_model_state_dict

        from ecrec.model.ranker import check_adapter_state

        check_adapter_state(self.adapter_state(), state)
        device = self.device
        tensors = {
            name: torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)
            for name, array in state.items()
        }
        head = {
            k.removeprefix(HEAD_PREFIX): v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)
        }
        lora = {k: v for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)}
        result = set_peft_model_state_dict(self.model["encoder"], lora)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ModelError(f"adapter state not applied: unexpected keys {unexpected[:3]}")
        self.model["head"].load_state_dict(head)


def build_bi_encoder(config: RankerConfig, *, device: str) -> BiEncoderRanker:
    """Load the sentence encoder offline, move it to its device, then attach LoRA (the
    order matters: opacus #820) and the initial head."""
    from ecrec.model.ranker import attach_lora, resolve_device

    encoder, tokenizer = load_encoder(config)
    encoder.to(resolve_device(device))
    encoder = attach_lora(encoder, config)
    ranker = BiEncoderRanker(encoder=encoder, tokenizer=tokenizer, config=config)
    ranker.model.to(resolve_device(device))
    return ranker


__all__ = ["HEAD_PREFIX", "BiEncoderRanker", "build_bi_encoder"]
