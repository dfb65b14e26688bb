"""The hybrid ranker: a frozen sentence encoder's similarity plus keyword match, combined
by a small head that the federation trains under DP.

Why this shape: on real search data (Home Depot) a cross-encoder fine-tuned with LoRA
under DP-SGD stays near random, while the zero-shot embedding model and character
n-gram overlap already rank well (see BENCHMARKS.md). The hybrid starts from both: its
round-0 head scores exactly the zero-shot bi-encoder cosine, and training learns how
much keyword match, title vs description and numbers (sizes, model numbers) should
count. DP noise is added to a handful of head weights instead of ~74k LoRA weights, so
the same ε buys a far better signal-to-noise ratio; the update is a few bytes.

Scoring cost: product embeddings do not depend on the query, so a catalogue is
embedded once and a query costs one encoder pass plus dot products and string
features (a cross-encoder needs one full pass per (query, product) pair).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecrec.errors import ModelError
from ecrec.model.base import RankerBase
from ecrec.model.features import LEXICAL_FEATURES, lexical_features

if TYPE_CHECKING:
    from ecrec.model.ranker import RankerConfig

#: Columns of the head's input: the neural similarity first, then keyword match. (A
#: query-vs-title cosine would cost a second encoder pass per product for a feature
#: that is nearly the same as this one; title match is left to the lexical features.)
FEATURES: tuple[str, ...] = ("cosine-doc", *LEXICAL_FEATURES)
#: Environment variable naming a folder where embeddings persist between runs on this
#: machine (benchmarks, repeated simulations); unset: kept in memory for one process.
EMBEDDING_CACHE_ENV = "ECREC_EMBEDDING_CACHE"
#: Round 0 scores ``INIT_SCALE * cosine-doc + INIT_BIAS``: the zero-shot bi-encoder's
#: ranking, on a logit scale where BCE training starts from sensible probabilities.
INIT_SCALE = 4.0
INIT_BIAS = -2.0


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Attention-mask-aware mean of the last hidden states (how all-MiniLM-L6-v2 pools)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class HybridRanker(RankerBase):
    """Frozen encoder + lexical features + a linear head (the only trained weights)."""

    #: Query and product are read separately (and the string features read the whole
    #: product text), so no token of a document is cut by pair truncation.
    truncates_pairs = False

    def __init__(self, *, encoder: Any, tokenizer: Any, config: RankerConfig) -> None:
        import torch

        self.tokenizer = tokenizer
        self.config = config
        for param in encoder.parameters():
            param.requires_grad_(False)
        encoder.eval()
        torch.manual_seed(config.seed)
        head = torch.nn.Linear(len(FEATURES), 1)
        with torch.no_grad():
            head.weight.zero_()
            head.weight[0, FEATURES.index("cosine-doc")] = INIT_SCALE
            head.bias.fill_(INIT_BIAS)
        self.model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
        self._embeddings: dict[bytes, np.ndarray] = {}
        self._store = _EmbeddingStore.from_environment(config)
        if self._store is not None:
            self._embeddings.update(self._store.load())

    # -- features -------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-norm sentence embeddings, each distinct text encoded once per ranker."""
        import torch

        keys = [
            hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            for t in texts
        ]
        todo = sorted(
            {k: t for k, t in zip(keys, texts, strict=True) if k not in self._embeddings}.items()
        )
        encoder = self.model["encoder"]
        device = self.device
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                enc = self.tokenizer(
                    [t for _, t in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.config.max_length,
                    return_tensors="pt",
                ).to(device)
                pooled = mean_pool(encoder(**enc).last_hidden_state, enc["attention_mask"])
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                for (key, _), row in zip(chunk, pooled.cpu().numpy(), strict=True):
                    self._embeddings[key] = row
        if todo and self._store is not None:
            self._store.save({k: self._embeddings[k] for k, _ in todo})
        if not keys:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._embeddings[k] for k in keys])

    def features(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """``[n, len(FEATURES)]`` head inputs of ``n`` (query, product document) pairs."""
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} product texts")
        if not queries:
            return np.zeros((0, len(FEATURES)), dtype=np.float32)
        cos_doc = np.sum(self.embed(queries) * self.embed(documents), axis=1)
        lexical = lexical_features(queries, documents)
        return np.column_stack([cos_doc, lexical]).astype(np.float32)

    def training_inputs(self, frame: Any) -> dict[str, Any]:
        """The tensors one training row is made of: its feature vector."""
        import torch

        from ecrec.data.schema import ranker_documents

        feats = self.features(frame["query"].astype(str).tolist(), ranker_documents(frame))
        return {"features": torch.as_tensor(feats)}

    def training_targets(self, frame: Any) -> np.ndarray:
        from ecrec.model.ranker import training_targets

        return training_targets(frame, graded=self.config.graded_targets)

    # -- scoring --------------------------------------------------------------

    def logits_module(self) -> Any:
        """``features [B, F] -> logits [B]``; Opacus wraps this (the head is its only
        trainable part, so per-sample gradients are cheap)."""
        import torch

        head = self.model["head"]

        class HeadLogits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.head = head

            def forward(self, features: Any) -> Any:
                return self.head(features).squeeze(-1)

        return HeadLogits()

    def score(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Relevance logits of (query, product text) pairs, float32."""
        import torch

        out: list[np.ndarray] = []
        head = self.model["head"]
        step = max(1, batch_size) * 16  # features are cheap; the encoder batches itself
        for start in range(0, len(queries), step):
            feats = self.features(queries[start : start + step], texts[start : start + step])
            with torch.inference_mode():
                logits = head(torch.as_tensor(feats, device=self.device)).squeeze(-1)
            out.append(logits.float().cpu().numpy())
            if on_batch is not None:
                on_batch(len(feats))
        if not out:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    # -- adapter state: what federation sends ---------------------------------

    def adapter_state(self) -> dict[str, np.ndarray]:
        """The head's weights, named ``head.weight``/``head.bias``, float32."""
        head = self.model["head"]
        return {
            f"head.{name}": tensor.detach().float().cpu().numpy().copy()
            for name, tensor in head.state_dict().items()
        }

    def load_adapter_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load head weights; refuses missing, unexpected, mis-shaped or non-finite entries."""
        import torch

        from ecrec.model.ranker import check_adapter_state

        check_adapter_state(self.adapter_state(), state)
        self.model["head"].load_state_dict(
            {
                name.removeprefix("head."): torch.as_tensor(
                    np.asarray(array, dtype=np.float32), device=self.device
                )
                for name, array in state.items()
            }
        )

    def head_weights(self) -> dict[str, float]:
        """Feature name -> head weight: what the trained ranker values (for reports)."""
        weight = self.adapter_state()["head.weight"].reshape(-1)
        return {name: float(w) for name, w in zip(FEATURES, weight, strict=True)}


class _EmbeddingStore:
    """Embeddings on disk, one folder per encoder (base model + max length); each writer
    adds a shard file atomically, so concurrent nodes on one machine never clash.
    Hand-written: a few lines of numpy beat a key-value store dependency."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def from_environment(cls, config: RankerConfig) -> _EmbeddingStore | None:
        from ecrec.model.ranker import MINILM, TINY

        root = os.environ.get(EMBEDDING_CACHE_ENV)
        if not root:
            return None
        model = config.base_model
        if model not in (TINY, MINILM):
            model = str(Path(model).resolve())
        # A random tiny encoder differs by seed; real encoders do not.
        identity = f"{model}|{config.max_length}|{config.seed if model == TINY else ''}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return cls(Path(root) / digest)

    def load(self) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(shard) as data:
                    out.update(zip((bytes(k) for k in data["keys"]), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError):
                continue  # a torn or foreign file is just recomputed
        return out

    def save(self, vectors: Mapping[bytes, np.ndarray]) -> None:
        import io
        import secrets

        from ecrec.atomic import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=np.array(list(vectors), dtype="S16"),
            vectors=np.stack(list(vectors.values())).astype(np.float32),
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.folder / f"{secrets.token_hex(8)}.npz", buffer.getvalue(), mode=0o600
        )


def load_encoder(config: RankerConfig) -> tuple[Any, Any]:
    """The sentence encoder (no classification head, nothing new to warn about) and its
    tokenizer, offline; shared by the hybrid and the bi-encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    from ecrec.model.ranker import MINILM, TINY, _quiet_transformers, minilm_path

    torch.manual_seed(config.seed)
    with _quiet_transformers():
        if config.base_model == TINY:
            tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
            encoder = BertModel(
                BertConfig(
                    vocab_size=tokenizer.vocab_size,
                    hidden_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=128,
                    max_position_embeddings=max(128, config.max_length),
                ),
                add_pooling_layer=False,
            )
            return encoder, tokenizer
        path = minilm_path() if config.base_model == MINILM else Path(config.base_model)
        if not path.is_dir():
            raise ModelError(f"model.base-model: no model folder at {path}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            encoder = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
            raise ModelError(f"cannot load model from {path}: {first}") from err
    return encoder, tokenizer


def build_hybrid(config: RankerConfig, *, device: str) -> HybridRanker:
    """Load the sentence encoder offline and attach the initial head."""
    from ecrec.model.ranker import resolve_device

    encoder, tokenizer = load_encoder(config)
    ranker = HybridRanker(encoder=encoder, tokenizer=tokenizer, config=config)
    ranker.model.to(resolve_device(device))
    return ranker


__all__ = [
    "FEATURES",
    "INIT_BIAS",
    "INIT_SCALE",
    "HybridRanker",
    "build_hybrid",
    "load_encoder",
    "mean_pool",
]
