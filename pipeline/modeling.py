"""The sentence encoder: loading, pooling, encoding and saving.

One pooling function serves training and evaluation (the card's code had two).
The saved folder is at once a Hugging Face model (``AutoModel``) and a
sentence-transformers model (``modules.json`` + a Pooling config that matches
the pooling we evaluated), so ``SentenceTransformer(folder)`` gives the same
embeddings as :func:`encode`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pipeline.errors import UserError

SAFETENSORS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"


def pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor, pooler: str) -> torch.Tensor:
    """Pool token states into one vector per sentence.

    Args:
        last_hidden: (B, T, H) last hidden state.
        attention_mask: (B, T), 1 for real tokens.
        pooler: ``cls`` (first token: [CLS] for BERT, <s> for RoBERTa; not BERT's
            ``pooler_output``), ``mean`` or ``max`` over real tokens.

    Returns:
        (B, H)
    """
    if pooler == "cls":
        return last_hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)  # (B, T, 1)
    if pooler == "mean":
        return (last_hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if pooler == "max":
        return last_hidden.masked_fill(mask == 0, torch.finfo(last_hidden.dtype).min).max(1).values
    raise ValueError(f"unknown pooler {pooler!r}")


class SentenceEncoder(nn.Module):
    """A transformer backbone + :func:`pool`, with SimCSE's training-only MLP head.

    ``forward`` is the training view (head applied when ``use_head``);
    :meth:`embed` is the evaluated embedding (never the head), matching the
    SimCSE paper's unsupervised setting and the card's evaluation.
    """

    def __init__(self, backbone: nn.Module, pooler: str, use_head: bool = False):
        super().__init__()
        self.backbone = backbone
        self.pooler = pooler
        hidden = backbone.config.hidden_size
        # SimCSE's MLPLayer: dense + tanh over the pooled vector, training only.
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh()) if use_head else None

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and mask -> (B, H) sentence embeddings, as evaluated."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return pool(out.last_hidden_state, attention_mask, self.pooler)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, H) training view: :meth:`embed`, then the head if present."""
        z = self.embed(input_ids, attention_mask)
        return self.head(z) if self.head is not None else z


def quiet_transformers() -> None:
    """Turn off transformers' per-file progress bars (they drown the stage logs)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _has_weights(folder: Path) -> bool:
    return (folder / SAFETENSORS).is_file() or (folder / PICKLE_WEIGHTS).is_file() or \
        any(folder.glob("model-*.safetensors"))


def convert_pickle_weights(src: Path | str, dst: Path | str) -> None:
    """Convert ``pytorch_model.bin`` to ``model.safetensors`` with torch's weights-only loader.

    Never a full unpickle: a pickle holding anything but tensors is refused.
    """
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError and friends
        raise UserError(f"{src}: not loadable with torch's weights_only=True loader "
                        f"({type(exc).__name__}); refusing a full unpickle, expected safetensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{src}: expected a mapping of tensor names to tensors")
    # safetensors refuses shared storage (tied embeddings); store independent copies.
    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(dst), metadata={"format": "pt"})


def check_model_folder(folder: Path | str) -> Path:
    """Check a local model folder has a config and weights; return it as a Path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: no config.json; expected a Hugging Face model folder")
    if not _has_weights(folder):
        raise UserError(f"{folder}: no weights ({SAFETENSORS} or {PICKLE_WEIGHTS}); expected a Hugging Face model folder")
    return folder


def load_encoder(
    folder: Path | str,
    *,
    pooler: str = "cls",
    dropout: float | None = None,
    use_head: bool = False,
    device: str | torch.device = "cpu",
):
    """Load a local model folder as a :class:`SentenceEncoder` and its fast tokenizer.

    Args:
        folder: a local Hugging Face folder with safetensors weights (a folder with
            only ``pytorch_model.bin`` is read through :func:`convert_pickle_weights`).
        pooler: see :func:`pool`.
        dropout: if given, the encoder's hidden and attention dropout (SimCSE's
            augmentation); ``None`` keeps the config's values.
        use_head: add SimCSE's training-only MLP head (freshly initialised).
        device: where to put the model.

    Returns:
        (encoder, tokenizer)
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    quiet_transformers()
    folder = check_model_folder(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    if dropout is not None:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(config, key):
                setattr(config, key, dropout)
    weights_dir = folder
    if not (folder / SAFETENSORS).is_file() and not any(folder.glob("model-*.safetensors")):
        import tempfile

        weights_dir = Path(tempfile.mkdtemp(prefix="simcse-ko-weights-"))
    try:
        if weights_dir != folder:
            for item in folder.iterdir():
                if item.is_file() and item.name != PICKLE_WEIGHTS:
                    shutil.copy2(item, weights_dir / item.name)
            convert_pickle_weights(folder / PICKLE_WEIGHTS, weights_dir / SAFETENSORS)
        backbone = AutoModel.from_pretrained(weights_dir, config=config, use_safetensors=True,
                                             trust_remote_code=False)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{folder}: cannot load the model weights ({first})") from None
    finally:
        if weights_dir != folder:  # the converted copy is in memory now; a model-sized temp folder per call
            shutil.rmtree(weights_dir, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=False)
    # Pretrained poolers (BERT's NSP pooler) are kept in the saved folder but never
    # trained or used: freeze them so DDP sees no unused trainable parameters.
    pooler_module = getattr(backbone, "pooler", None)
    if isinstance(pooler_module, nn.Module):
        pooler_module.requires_grad_(False)
    encoder = SentenceEncoder(backbone, pooler=pooler, use_head=use_head).to(device)
    return encoder, tokenizer


def model_position_limit(config) -> int | None:
    """Longest input (tokens, specials included) the model's position table supports."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= (getattr(config, "pad_token_id", 1) or 0) + 1  # positions start after padding_idx
    return int(limit)


# --- encoding ---------------------------------------------------------------------

def tokenize_ids(tokenizer, sentences: Sequence[str], max_len: int, batch: int = 10_000) -> list[list[int]]:
    """Token ids (specials included, truncated to ``max_len``, unpadded) for each sentence."""
    ids: list[list[int]] = []
    for start in range(0, len(sentences), batch):
        enc = tokenizer(list(sentences[start:start + batch]), truncation=True, max_length=max_len,
                        padding=False, return_attention_mask=False, return_token_type_ids=False)
        ids.extend(enc["input_ids"])
    return ids


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence of the batch. Returns (B, T) input_ids and attention_mask (int64)."""
    longest = max(len(x) for x in ids)
    input_ids = np.full((len(ids), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), longest), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


@torch.inference_mode()
def encode_ids(
    encoder: SentenceEncoder,
    ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Embed pre-tokenized sentences in length-sorted batches (fewer pad tokens, same result).

    Returns:
        (N, H) float32 array in the input order.
    """
    was_training = encoder.training
    encoder.eval()
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    hidden = encoder.backbone.config.hidden_size
    out = np.empty((len(ids), hidden), dtype=np.float32)
    device = torch.device(device)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        input_ids, mask = collate([ids[i] for i in idx], pad_id)
        input_ids = input_ids.to(device, non_blocking=True)
        mask = mask.to(device, non_blocking=True)
        if autocast_dtype is not None and device.type == "cuda":
            with torch.autocast("cuda", dtype=autocast_dtype):
                emb = encoder.embed(input_ids, mask)
        else:
            emb = encoder.embed(input_ids, mask)
        out[idx] = emb.float().cpu().numpy()
    if was_training:
        encoder.train()
    return out


def encode(
    encoder: SentenceEncoder,
    tokenizer,
    sentences: Sequence[str],
    *,
    max_len: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Embed sentences: each distinct sentence once, length-sorted batches, inference mode.

    Args:
        sentences: N sentences (duplicates allowed, encoded once).
        max_len: truncation length in tokens, specials included.

    Returns:
        (N, H) float32 embeddings in input order.
    """
    unique = list(dict.fromkeys(sentences))
    position = {s: i for i, s in enumerate(unique)}
    ids = tokenize_ids(tokenizer, unique, max_len)
    emb = encode_ids(encoder, ids, pad_id=pad_token_id(tokenizer), batch_size=batch_size, device=device,
                     autocast_dtype=autocast_dtype)
    return emb[[position[s] for s in sentences]]


def pad_token_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return 0 if pad is None else int(pad)


# --- saving -----------------------------------------------------------------------

POOLING_MODES = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}


@dataclass(frozen=True)
class SavedModel:
    folder: Path
    hidden_size: int


def save_model(encoder: SentenceEncoder, tokenizer, folder: Path | str, *, max_len: int) -> SavedModel:
    """Save the backbone (safetensors), tokenizer and sentence-transformers configs.

    The MLP head is not saved: it is a training device, not part of the embedding.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    quiet_transformers()
    encoder.backbone.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_sentence_transformers_config(folder, hidden_size=encoder.backbone.config.hidden_size,
                                       pooler=encoder.pooler, max_len=max_len)
    return SavedModel(folder, encoder.backbone.config.hidden_size)


def write_sentence_transformers_config(folder: Path, *, hidden_size: int, pooler: str, max_len: int) -> None:
    """Make ``folder`` loadable by ``SentenceTransformer`` with the pooling we evaluate."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    pooling[POOLING_MODES[pooler]] = True
    dump = lambda obj: json.dumps(obj, indent=2, sort_keys=True) + "\n"  # noqa: E731
    (folder / "modules.json").write_text(dump(modules), encoding="utf-8")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(dump(pooling), encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text(
        dump({"max_seq_length": max_len, "do_lower_case": False}), encoding="utf-8")
    (folder / "config_sentence_transformers.json").write_text(
        dump({"similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": None}), encoding="utf-8")
