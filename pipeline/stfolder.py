"""How a sentence-transformers model folder defines its embedding: the one reader of its files.

A folder saved by sentence-transformers (any version) says how to turn the last hidden
state into a sentence embedding in up to four files:

- ``modules.json``: the module chain (Transformer, Pooling, optionally Normalize) and
  where each module's config lives;
- ``1_Pooling/config.json`` (the Pooling module's folder): the pooling, written either as
  ``{"pooling_mode": "mean", "embedding_dimension": ..., "include_prompt": true}``
  (sentence-transformers >= 5.x, what 6.2 writes) or as the older booleans
  ``{"pooling_mode_cls_token": true, ..., "word_embedding_dimension": ...}``, which 6.2 still reads;
- ``sentence_bert_config.json``: ``max_seq_length`` in older folders; 6.2 writes none and
  keeps the limit in the tokenizer's ``model_max_length``;
- ``config_sentence_transformers.json``: ``prompts`` and ``default_prompt_name`` (a prompt
  put before every input by default).

Everything here mirrors what sentence-transformers 6.2 does when it loads such a folder
(``Pooling.load_config``, ``Transformer.__init__``/``max_seq_length``), so our evaluator
encodes a folder the way ``SentenceTransformer(folder).encode`` would. What our evaluator
cannot reproduce (weightedmean, lasttoken, mean_sqrt_len_tokens or concatenated poolings,
Dense or other modules after pooling) is refused with one line.

It also holds the torch-free check that a folder is a model at all (config and weights), so the stages
that only fetch or name models need not import torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError

#: A model folder's weights: one safetensors file (or shards ``model-*.safetensors``), or a pickle.
SAFETENSORS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"


def check_model_folder(folder: Path | str) -> Path:
    """Check a local model folder has a config and weights; return it as a Path (reads no weights)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder}: no config.json; expected a Hugging Face model folder")
    if not _has_weights(folder):
        raise UserError(f"{folder}: no weights ({SAFETENSORS} or {PICKLE_WEIGHTS}); expected a Hugging Face model folder")
    return folder


def _has_weights(folder: Path) -> bool:
    return (folder / SAFETENSORS).is_file() or (folder / PICKLE_WEIGHTS).is_file() or \
        any(folder.glob("model-*.safetensors"))


#: the poolings our encoder implements (pipeline.modeling)
POOLINGS = ("cls", "mean", "max")
#: sentence-transformers' older boolean keys, in the order its Pooling concatenates them
LEGACY_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
#: the module types (last dotted component of modules.json's ``type``) whose effect we reproduce
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
#: transformers' "no limit" model_max_length (tokenizers saved without one)
_NO_LIMIT = int(1e30)


@dataclass(frozen=True)
class StFolder:
    """What a folder's sentence-transformers files declare; None where the file saying it is absent.

    Attributes:
        pooling: cls, mean or max (None: no Pooling config).
        normalize: whether the module chain ends in Normalize (None: no modules.json).
        max_seq_length: the token limit sentence-transformers truncates to (None: nothing says one).
        include_prompt: False = the prompt's tokens are left out of the pooling.
        default_prompt: the text put before every input by default ('' = none).
        dimension: the embedding dimension the Pooling config names (None: not given).
    """

    pooling: str | None = None
    normalize: bool | None = None
    max_seq_length: int | None = None
    include_prompt: bool = True
    default_prompt: str = ""
    dimension: int | None = None

    @property
    def saved_by_st(self) -> bool:
        """True for a sentence-transformers folder (it has a modules.json)."""
        return self.normalize is not None

    def prefix(self, given: str, what: str) -> str:
        """The text to put before every input: ``given``, else the folder's default prompt (as
        ``SentenceTransformer.encode`` does without ``prompt_name``).

        Raises:
            UserError: the folder pools without the prompt's tokens (include_prompt false), which our
                evaluator does not implement, and there is a prompt (naming ``what``).
        """
        prefix = given or self.default_prompt
        if prefix and not self.include_prompt:
            raise UserError(f"{what}: its Pooling config leaves the prompt's tokens out of the pooling "
                            f"(include_prompt false), which this evaluator does not implement; the prefix "
                            f"{prefix!r} would be pooled")
        return prefix


def _json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what}: not valid JSON ({exc})") from None


def parse_pooling(cfg: dict, what: str) -> tuple[str, bool, int | None]:
    """(pooling, include_prompt, dimension) of a Pooling config dict, either format, as sentence-transformers reads it.

    Raises:
        UserError: a mode our encoder does not implement, or several modes (concatenated), naming ``what``.
    """
    if not isinstance(cfg, dict):
        raise UserError(f"{what}: expected a JSON object")
    mode = cfg.get("pooling_mode")
    if mode is None:
        # older format; sentence-transformers falls back to mean when no boolean is set
        mode = [name for key, name in LEGACY_MODES.items() if cfg.get(key)] or "mean"
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if not isinstance(mode, str):
        raise UserError(f"{what}: pooling modes {mode} concatenated; expected exactly one of {', '.join(POOLINGS)}")
    if mode not in POOLINGS:
        raise UserError(f"{what}: pooling mode {mode!r} is not implemented here; expected one of {', '.join(POOLINGS)}")
    dimension = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
    return mode, bool(cfg.get("include_prompt", True)), dimension


def _modules(folder: Path) -> tuple[bool | None, str]:
    """(normalize, the Pooling module's folder) from modules.json; (None, "1_Pooling") without one."""
    path = folder / "modules.json"
    if not path.is_file():
        return None, "1_Pooling"
    what = f"modules.json of {folder.name}"
    modules = _json(path, what)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise UserError(f"{what}: expected a list of modules")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    odd = [k for k in kinds if k not in SUPPORTED_MODULES]
    if odd:
        raise UserError(f"{what}: module(s) {', '.join(odd)} are not implemented here; expected only "
                        f"{', '.join(SUPPORTED_MODULES)}")
    pooling_dir = next((m.get("path") for m, k in zip(modules, kinds) if k == "Pooling" and m.get("path")),
                       "1_Pooling")
    return "Normalize" in kinds, pooling_dir


def _max_seq_length(folder: Path) -> int | None:
    """sentence-transformers' truncation length: sentence_bert_config's ``max_seq_length`` if set, else the
    tokenizer's ``model_max_length`` capped at config.json's ``max_position_embeddings`` (its Transformer does
    exactly this); None when no file names a limit."""
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        given = _json(st_config, f"sentence_bert_config.json of {folder.name}").get("max_seq_length")
        if given is not None:
            return int(given)
    limit = _NO_LIMIT
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        limit = int(_json(tok_config, f"tokenizer_config.json of {folder.name}").get("model_max_length", _NO_LIMIT))
    config = folder / "config.json"
    if config.is_file():
        positions = _json(config, f"config.json of {folder.name}").get("max_position_embeddings")
        if positions is not None and positions != -1:
            limit = min(limit, int(positions))
    return None if limit >= _NO_LIMIT else limit


def _default_prompt(folder: Path) -> str:
    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return ""
    cfg = _json(path, f"config_sentence_transformers.json of {folder.name}")
    name = cfg.get("default_prompt_name")
    return (cfg.get("prompts") or {}).get(name, "") if name else ""


def read_st_folder(folder: Path | str) -> StFolder:
    """Read ``folder``'s sentence-transformers files (see the module docstring).

    Returns:
        :class:`StFolder`; every field at its "absent" value for a plain transformers folder.

    Raises:
        UserError: a file is not valid JSON, or declares a pooling or module our evaluator cannot reproduce.
    """
    folder = Path(folder)
    normalize, pooling_dir = _modules(folder)
    pooling, include_prompt, dimension = None, True, None
    config = folder / pooling_dir / "config.json"
    if config.is_file():
        pooling, include_prompt, dimension = parse_pooling(
            _json(config, f"{pooling_dir}/config.json of {folder.name}"), f"{pooling_dir}/config.json of {folder.name}")
    return StFolder(pooling=pooling, normalize=normalize, max_seq_length=_max_seq_length(folder),
                    include_prompt=include_prompt, default_prompt=_default_prompt(folder), dimension=dimension)
