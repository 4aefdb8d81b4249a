"""Tiny stand-ins for klue/bert-base and klue/roberta-base, built offline from a corpus.

No pretrained Korean weights can be had offline, so the smoke run uses a
randomly initialised small BERT (or RoBERTa) with a WordPiece vocabulary built
from the smoke corpus. Both are bit-for-bit deterministic: the vocabulary is
counted and sorted in Python (the Rust WordPiece trainer breaks frequency ties
in hash order, which changes the vocabulary from run to run), the weights come
from a seeded initialisation.

The normaliser keeps ``strip_accents=False`` and ``lowercase=False``: with
accent stripping, NFD would split every Hangul syllable into jamo.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

# klue/bert-base puts [PAD] first; klue/roberta-base mirrors RoBERTa's <s>, <pad>, </s>, <unk>.
SPECIALS = {
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "roberta": ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"],
}


def _normalizer():
    from tokenizers import normalizers

    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                      lowercase=False)


def wordpiece_vocab(sentences: Iterable[str], *, vocab_size: int, specials: list[str]) -> list[str]:
    """A deterministic WordPiece vocabulary: specials, every character, then frequent pieces.

    Pieces are whole words, word prefixes and ``##`` suffixes, ranked by corpus
    frequency with ties broken by the string itself.
    """
    from tokenizers import pre_tokenizers

    normalizer = _normalizer()
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for sentence in sentences:
        for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(sentence)):
            words[word] += 1
    chars = sorted({c for w in words for c in w})
    vocab = list(specials) + chars + [f"##{c}" for c in chars]
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        if len(word) > 1:
            pieces[word] += count
        for k in range(2, len(word)):
            pieces[word[:k]] += count
        for k in range(1, len(word) - 1):
            pieces["##" + word[k:]] += count
    seen = set(vocab)
    for piece, _ in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    return vocab


def build_tokenizer(vocab: list[str], specials: list[str]):
    """A BertTokenizerFast over ``vocab`` (WordPiece, [CLS] x [SEP] template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    ids = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", do_lower_case=False,
                             strip_accents=False, tokenize_chinese_chars=True)


def build_tiny_model(
    corpus: Path | str,
    out: Path | str,
    *,
    arch: str = "bert",
    vocab_size: int = 4000,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 256,
    max_positions: int = 128,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised tiny encoder + tokenizer to ``out`` (safetensors).

    Args:
        corpus: one sentence per line; the vocabulary is built from it.
        arch: ``bert`` or ``roberta`` (RoBERTa positions start after the pad id,
            one token type, like klue/roberta-base).
    """
    import torch
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

    out = Path(out)
    specials = SPECIALS[arch]
    sentences = Path(corpus).read_text(encoding="utf-8").splitlines()
    vocab = wordpiece_vocab(sentences, vocab_size=vocab_size, specials=specials)
    tokenizer = build_tokenizer(vocab, specials)
    common = dict(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=intermediate, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(seed)
    if arch == "bert":
        model = BertModel(BertConfig(max_position_embeddings=max_positions, pad_token_id=0, **common))
    elif arch == "roberta":
        pad = vocab.index("[PAD]")
        config = RobertaConfig(max_position_embeddings=max_positions + pad + 1, pad_token_id=pad,
                               bos_token_id=vocab.index("[CLS]"), eos_token_id=vocab.index("[SEP]"),
                               type_vocab_size=1, **common)
        model = RobertaModel(config)
    else:
        raise ValueError(f"unknown arch {arch!r}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
