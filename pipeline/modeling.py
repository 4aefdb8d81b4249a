"""The sentence encoder: loading, pooling, encoding and saving.

One pooling function serves training and evaluation (the card's code had two).
The saved folder is at once a Hugging Face model (``AutoModel``) and a
sentence-transformers model (``modules.json`` + a Pooling config that matches
the pooling we evaluated), so ``SentenceTransformer(folder)`` gives the same
embeddings as :func:`encode`.
"""

from __future__ import annotations

import json
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.errors import UserError
from pipeline.stfolder import PICKLE_WEIGHTS, SAFETENSORS, check_model_folder


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


def convert_pickle_weights(src: Path | str, dst: Path | str) -> None:
    """Convert ``pytorch_model.bin`` to ``model.safetensors`` with torch's weights-only loader.

    For :func:`pipeline.hub.fetch_model`, which stores every fetched model as safetensors
    (one format to hash and to record); :func:`load_encoder` reads a pickle in place.
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


#: Checkpoint keys an encoder may leave unused: the pre-training heads (BERT's MLM + NSP ``cls.``,
#: RoBERTa's MLM ``lm_head.``) and the pooler, which cls/mean/max pooling never reads.
UNUSED_PREFIXES = ("cls.", "lm_head.", "pooler.")


@contextmanager
def _transformers_errors_only():
    """Silence transformers' warnings (its load report) in the block: :func:`check_loading_info` judges instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def check_loading_info(folder: Path | str, info: dict, backbone: nn.Module) -> None:
    """Stop with one line unless the checkpoint gave the backbone every encoder weight.

    Hub checkpoints such as klue/bert-base (``BertForPreTraining``) and
    klue/roberta-base (``RobertaForMaskedLM``) carry ``bert.``/``roberta.``-prefixed
    keys (transformers strips the prefix), pre-training heads and, for RoBERTa,
    no pooler. Allowed: unexpected head, pooler and buffer (``position_ids``) keys;
    a missing pooler (the backbone then has a randomly initialised pooler, which
    cls/mean/max pooling never uses) or buffer. Anything else means the weights
    are not the encoder we think they are.

    Args:
        folder: the model folder (named in the error).
        info: ``from_pretrained(..., output_loading_info=True)``'s second value.
        backbone: the loaded model (its buffer names are allowed keys).
    """
    buffers = {name for name, _ in backbone.named_buffers()}

    def buffer(key: str) -> bool:
        return key in buffers or key.endswith("position_ids")

    missing = sorted(k for k in info.get("missing_keys", ()) if not (k.startswith("pooler.") or buffer(k)))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not (k.startswith(UNUSED_PREFIXES) or buffer(k)))
    model_type = getattr(backbone.config, "model_type", "encoder")
    for keys, problem, expected in (
            (missing, "is missing from the checkpoint", f"every {model_type} encoder weight"),
            (unexpected, "is in the checkpoint but not in the encoder",
             "only encoder weights, MLM/NSP heads (cls., lm_head.), a pooler or position ids")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise UserError(f"{folder}: weight '{keys[0]}' {problem}{more}; expected {expected}")


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
        folder: a local Hugging Face folder with safetensors weights or only a
            ``pytorch_model.bin`` (read with torch's weights-only loader; a pickle
            holding anything else is refused); a base model or a pre-training
            checkpoint, checked by :func:`check_loading_info`.
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
    safetensors = (folder / SAFETENSORS).is_file() or any(folder.glob("model-*.safetensors"))
    try:
        with _transformers_errors_only():
            # A pickle-only folder is read by transformers itself, with torch.load(weights_only=True):
            # tensors and plain containers only, never a full unpickle (verified in transformers 5.24's
            # modeling_utils.load_state_dict). fp32 parameters whatever dtype the checkpoint was saved in
            # (transformers 5 keeps the saved one; the card's transformers 4 upcast): AdamW, the
            # GradScaler and fp32 evaluation rely on it.
            backbone, info = AutoModel.from_pretrained(folder, config=config, use_safetensors=safetensors,
                                                       dtype=torch.float32, trust_remote_code=False,
                                                       output_loading_info=True)
    except pickle.UnpicklingError as exc:  # the weights-only loader met a global (code, a class): not run
        lines = str(exc).splitlines()
        # torch names the refused global in one line of its multi-line message; keep that line's first sentence
        why = next((line.strip().split(". ")[0].rstrip(".") for line in lines if "GLOBAL" in line),
                   type(exc).__name__)
        raise UserError(f"{folder / PICKLE_WEIGHTS}: not loadable with torch's weights_only=True loader ({why}); "
                        f"refusing a full unpickle, expected a mapping of weight names to tensors") from None
    except (TypeError, AttributeError) as exc:
        if safetensors:  # safetensors holds only named tensors: a bug, keep the traceback
            raise
        # a weights-only pickle of plain containers that is not a name -> tensor mapping (a list, ...)
        raise UserError(f"{folder / PICKLE_WEIGHTS}: cannot load the model weights ({type(exc).__name__}); "
                        f"expected a mapping of weight names to tensors") from None
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{folder}: cannot load the model weights ({first})") from None
    check_loading_info(folder, info, backbone)
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

class _ClsQueryLayer(nn.Module):
    """The last encoder layer computed for the first position only (inference, [CLS] pooling).

    [CLS] pooling reads one row of the last hidden state. In the last layer every
    other row's query, attention output and feed-forward is computed and thrown
    away; this wrapper projects keys and values for all tokens (the first row
    attends to them) and runs the rest on the first row alone, through the
    layer's own modules and the model's attention implementation. The result is
    the same [CLS] vector, at ~10/12 less of the last layer's work; the layer's
    output has sequence length 1, which only :func:`pool` with ``cls`` reads.
    """

    def __init__(self, layer: nn.Module):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.bert.modeling_bert import eager_attention_forward

        super().__init__()
        self.layer = layer
        # the attention function the model itself uses (sdpa, eager, ...), looked up once, not per batch
        self.attention_fn = ALL_ATTENTION_FUNCTIONS.get_interface(
            layer.attention.self.config._attn_implementation, eager_attention_forward)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args, **kwargs) -> torch.Tensor:
        layer, attn = self.layer, self.layer.attention.self
        batch, length, _ = hidden_states.shape
        first = hidden_states[:, :1]  # (B, 1, H)
        split = (batch, length, -1, attn.attention_head_size)  # -> (B, heads, T, d) after the transpose
        query = attn.query(first).view(batch, 1, -1, attn.attention_head_size).transpose(1, 2)  # (B, heads, 1, d)
        key = attn.key(hidden_states).view(*split).transpose(1, 2)
        value = attn.value(hidden_states).view(*split).transpose(1, 2)
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.size(-2) > 1:
            attention_mask = attention_mask[:, :, :1]  # the first query row of a (B, 1|heads, T, T) mask
        context, _ = self.attention_fn(attn, query, key, value, attention_mask, dropout=0.0, scaling=attn.scaling)
        context = context.reshape(batch, 1, -1)
        attended = layer.attention.output(context, first)
        return layer.output(layer.intermediate(attended), attended)  # (B, 1, H)


def _cls_query_supported(encoder: "SentenceEncoder") -> bool:
    """Whether the backbone is a BERT-style encoder :class:`_ClsQueryLayer` reproduces exactly."""
    config = encoder.backbone.config
    layers = getattr(getattr(encoder.backbone, "encoder", None), "layer", None)
    if encoder.pooler != "cls" or not isinstance(layers, nn.ModuleList) or not len(layers):
        return False
    if getattr(config, "model_type", "") not in ("bert", "roberta") or getattr(config, "is_decoder", False):
        return False
    if getattr(config, "add_cross_attention", False):
        return False
    last = layers[-1]
    attn = getattr(getattr(last, "attention", None), "self", None)
    return all(hasattr(attn, name) for name in ("query", "key", "value", "scaling", "attention_head_size")) and \
        all(hasattr(last, name) for name in ("intermediate", "output"))


@contextmanager
def cls_query_last_layer(encoder: "SentenceEncoder"):
    """Within the block, the encoder's last layer computes the [CLS] row only (see :class:`_ClsQueryLayer`).

    A no-op unless the encoder pools ``cls``, is in eval mode and is a BERT/RoBERTa
    encoder; the original layer is always put back.
    """
    if encoder.training or not _cls_query_supported(encoder):
        yield
        return
    layers = encoder.backbone.encoder.layer
    original = layers[-1]
    layers[-1] = _ClsQueryLayer(original)
    try:
        yield
    finally:
        layers[-1] = original


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


#: Padded token positions per forward pass when encoding on CPU. Measured with
#: ``bench/eval_speed.py`` (all-MiniLM-L6-v2, 2-core EPYC): 256 sentences of ~40
#: tokens run ~20% slower than the same work in ~2k-position batches.
CPU_BATCH_TOKENS = 2048


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length, shortest first.

    Each batch has at most ``batch_size`` items and, when ``max_tokens`` is given,
    at most ``max_tokens`` positions once padded to its longest item (a single
    item longer than that still gets its own batch). Ties keep input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending length: the item being added is the batch's longest
        full = len(current) == batch_size or \
            (max_tokens is not None and current and (len(current) + 1) * lengths[i] > max_tokens)
        if full:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def encode_ids(
    encoder: SentenceEncoder,
    ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    max_tokens: int | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """Embed pre-tokenized sentences in length-sorted batches (fewer pad tokens, same result).

    Batches hold at most ``batch_size`` sentences and, on CPU, at most
    ``max_tokens`` padded positions (default :data:`CPU_BATCH_TOKENS`): a CPU
    runs the matrix products faster when a layer's activations stay in cache,
    and a sentence's embedding does not depend on its batch mates.

    With ``cls`` pooling the last layer runs for the [CLS] row only
    (:func:`cls_query_last_layer`): the same vectors, less work.

    ``progress``: a label for a tqdm bar of sentences encoded (None: no bar).

    Returns:
        (N, H) float32 array in the input order.
    """
    was_training = encoder.training
    encoder.eval()
    hidden = encoder.backbone.config.hidden_size
    out = np.empty((len(ids), hidden), dtype=np.float32)
    device = torch.device(device)
    if max_tokens is None and device.type == "cpu":
        max_tokens = CPU_BATCH_TOKENS
    bar = tqdm(total=len(ids), desc=progress, unit="sent", leave=False, disable=progress is None)
    with cls_query_last_layer(encoder), bar:
        for idx in length_batches([len(x) for x in ids], batch_size, max_tokens):
            input_ids, mask = collate([ids[i] for i in idx], pad_id)
            input_ids = input_ids.to(device, non_blocking=True)
            mask = mask.to(device, non_blocking=True)
            if autocast_dtype is not None and device.type == "cuda":
                with torch.autocast("cuda", dtype=autocast_dtype):
                    emb = encoder.embed(input_ids, mask)
            else:
                emb = encoder.embed(input_ids, mask)
            out[idx] = emb.float().cpu().numpy()
            bar.update(len(idx))
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
    progress: str | None = None,
) -> np.ndarray:
    """Embed sentences: each distinct sentence once, length-sorted batches, inference mode.

    Args:
        sentences: N sentences (duplicates allowed, encoded once).
        max_len: truncation length in tokens, specials included.
        progress: a label for a progress bar (None: no bar).

    Returns:
        (N, H) float32 embeddings in input order.
    """
    unique = list(dict.fromkeys(sentences))
    position = {s: i for i, s in enumerate(unique)}
    ids = tokenize_ids(tokenizer, unique, max_len)
    emb = encode_ids(encoder, ids, pad_id=pad_token_id(tokenizer), batch_size=batch_size, device=device,
                     autocast_dtype=autocast_dtype, progress=progress)
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
    drop_load_time_keys(folder / "tokenizer_config.json")
    write_sentence_transformers_config(folder, hidden_size=encoder.backbone.config.hidden_size,
                                       pooler=encoder.pooler, max_len=max_len)
    return SavedModel(folder, encoder.backbone.config.hidden_size)


#: What transformers writes into a saved tokenizer_config.json about how the tokenizer was *loaded*
#: (offline or not, from a folder or the hub). Not part of the tokenizer: HF_HUB_OFFLINE alone made
#: two runs of the same stage write different bytes (tests/test_pipeline_e2e.py found it).
LOAD_TIME_KEYS = ("is_local", "local_files_only")


def drop_load_time_keys(path: Path) -> None:
    """Remove :data:`LOAD_TIME_KEYS` from a saved tokenizer config (as transformers writes it: sorted, indent 2)."""
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if any(key in config for key in LOAD_TIME_KEYS):
        for key in LOAD_TIME_KEYS:
            config.pop(key, None)
        path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_sentence_transformers_config(folder: Path, *, hidden_size: int, pooler: str, max_len: int) -> None:
    """Make ``folder`` loadable by ``SentenceTransformer`` with the pooling we evaluate.

    Written in the older format (``pooling_mode_*`` booleans, ``word_embedding_dimension``,
    ``max_seq_length``) on purpose: sentence-transformers 6.2 reads it exactly as its own
    ``pooling_mode``/``embedding_dimension`` format (tests/test_stfolder.py loads both), while
    older releases (their Pooling takes ``word_embedding_dimension``) reject the new keys, so a package
    we publish loads in both.
    """
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
