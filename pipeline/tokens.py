"""A memory-mapped token cache: flat int32 token ids plus int64 offsets per column.

Tokenizing 1M sentences once (tokenize stage) and memory-mapping the result
keeps tokenization out of the training loop, and ``dvc exp run -S temp=...``
reuses the cache because the tokenize stage does not read ``temp``.

Layout of a cache folder: ``<column>.ids.npy`` (all ids, concatenated) and
``<column>.offsets.npy`` (N+1 offsets; sentence i is ids[off[i]:off[i+1]]),
plus ``meta.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm


class TokenColumn:
    """Read access to one column of a token cache (memory-mapped)."""

    def __init__(self, folder: Path | str, name: str):
        folder = Path(folder)
        self.name = name
        self.ids = np.load(folder / f"{name}.ids.npy", mmap_mode="r")
        self.offsets = np.load(folder / f"{name}.offsets.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """(N,) token counts."""
        return np.diff(np.asarray(self.offsets))

    def rows(self, index: Sequence[int]) -> list[np.ndarray]:
        """The token id arrays of the given rows."""
        return [self[int(i)] for i in index]


def tokenize_to_arrays(tokenizer, sentences: Sequence[str], *, max_len: int, chunk: int = 20_000,
                       desc: str = "tokenize", progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize (fast tokenizer, batched, truncated at ``max_len``, unpadded) into flat arrays.

    Returns:
        (ids int32 (total_tokens,), offsets int64 (N+1,))
    """
    pieces: list[np.ndarray] = []
    lengths = np.zeros(len(sentences), dtype=np.int64)
    with tqdm(total=len(sentences), unit="sent", desc=desc, disable=not progress) as bar:
        for start in range(0, len(sentences), chunk):
            enc = tokenizer(list(sentences[start:start + chunk]), truncation=True, max_length=max_len,
                            padding=False, return_attention_mask=False, return_token_type_ids=False)
            for j, seq in enumerate(enc["input_ids"]):
                lengths[start + j] = len(seq)
                pieces.append(np.asarray(seq, dtype=np.int32))
            bar.update(len(enc["input_ids"]))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return ids, offsets


def write_column(folder: Path | str, name: str, ids: np.ndarray, offsets: np.ndarray) -> None:
    """Write one column into a (temporary) cache folder."""
    folder = Path(folder)
    np.save(folder / f"{name}.ids.npy", np.ascontiguousarray(ids, dtype=np.int32))
    np.save(folder / f"{name}.offsets.npy", np.ascontiguousarray(offsets, dtype=np.int64))


def content_key(determinants: dict) -> str:
    """A short stable hash of everything that determines a cache (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(determinants, sort_keys=True, default=str).encode()).hexdigest()[:16]
