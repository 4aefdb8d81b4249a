"""Tiny stand-ins for klue/bert-base and klue/roberta-base (and the compared XLM-R encoders), built offline.

No pretrained Korean weights can be had offline, so the smoke run uses a
randomly initialised small BERT (or RoBERTa) with a WordPiece vocabulary built
from the smoke corpus, and an XLM-R-shaped one (multilingual-e5, bge-m3) with a
sentencepiece-style Unigram ``tokenizer.json``. All are bit-for-bit deterministic:
vocabularies are counted and sorted in Python (the Rust WordPiece trainer breaks
frequency ties in hash order, and its Unigram trainer's scores differ from run
to run), the weights come from a seeded initialisation.

The normaliser keeps ``strip_accents=False`` and ``lowercase=False``: with
accent stripping, NFD would split every Hangul syllable into jamo.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path
from typing import Iterable

# klue/bert-base puts [PAD] first; klue/roberta-base mirrors RoBERTa's <s>, <pad>, </s>, <unk>;
# XLM-R's sentencepiece vocabulary starts <s>, <pad>, </s>, <unk> and ends with <mask>.
SPECIALS = {
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "roberta": ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"],
    "xlm-roberta": ["<s>", "<pad>", "</s>", "<unk>"],
}
XLMR_MASK = "<mask>"
#: Sentencepiece's word-boundary mark: every word starts with it (Metaspace pre-tokenizer).
SPIECE_SPACE = "\u2581"
#: Characters every Unigram vocabulary has, whether or not the corpus uses them.
ASCII_CHARS = string.ascii_letters + string.digits + string.punctuation
#: Longest Unigram piece counted, in characters (the mark included): Korean words in the corpus are short.
MAX_PIECE = 6


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


def unigram_vocab(sentences: Iterable[str], *, vocab_size: int, specials: list[str]) -> list[tuple[str, float]]:
    """A deterministic sentencepiece-style Unigram vocabulary: [(piece, log probability)].

    Specials (score 0), every character (and :data:`ASCII_CHARS`), then the most frequent substrings (up to
    :data:`MAX_PIECE` characters) of the ``\u2581``-marked words, ties broken by the
    string; scores are log relative frequencies, so longer frequent pieces win the
    Viterbi segmentation, as in a trained sentencepiece model. ``<mask>`` comes last.
    """
    import math

    words = Counter(w for sentence in sentences for w, _ in _metaspace().pre_tokenize_str(_nfkc(sentence)))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for i in range(len(word)):
            for j in range(i + 1, min(len(word), i + MAX_PIECE) + 1):
                pieces[word[i:j]] += count
    for char in ASCII_CHARS:  # XLM-R covers Latin text: an English prefix such as "query: " is not <unk>
        pieces.setdefault(char, 1)
    total = sum(pieces.values())
    chars = sorted(p for p in pieces if len(p) == 1)
    rest = sorted((p for p in pieces if len(p) > 1), key=lambda p: (-pieces[p], p))
    chosen = chars + rest[: max(0, vocab_size - len(specials) - len(chars) - 1)]
    return ([(tok, 0.0) for tok in specials] + [(p, math.log(pieces[p] / total)) for p in chosen]
            + [(XLMR_MASK, 0.0)])


def _nfkc(text: str) -> str:
    from tokenizers import normalizers

    return normalizers.NFKC().normalize_str(text)


def _metaspace():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Metaspace(replacement=SPIECE_SPACE, prepend_scheme="always")


def build_unigram_tokenizer(vocab: list[tuple[str, float]]):
    """An XLMRobertaTokenizerFast over a Unigram ``vocab``: NFKC, Metaspace, ``<s> $A </s>`` as XLM-R's
    tokenizer.json (no token type ids)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import XLMRobertaTokenizerFast

    ids = {tok: i for i, (tok, _) in enumerate(vocab)}
    tok = Tokenizer(models.Unigram(vocab, unk_id=ids["<unk>"]))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = _metaspace()
    tok.decoder = decoders.Metaspace(replacement=SPIECE_SPACE, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token=XLMR_MASK)


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
    pickle_weights: bool = False,
) -> Path:
    """Write a randomly initialised tiny encoder + tokenizer to ``out``.

    Args:
        corpus: one sentence per line; the vocabulary is built from it.
        arch: ``bert``, ``roberta`` (RoBERTa positions start after the pad id, one token type, like
            klue/roberta-base) or ``xlm-roberta`` (as ``roberta``, with a sentencepiece-style Unigram
            tokenizer.json, like multilingual-e5 and bge-m3).
        pickle_weights: save the weights only as a ``pytorch_model.bin`` state dict (no safetensors), as
            older hub repositories have them (jhgan/ko-sroberta-multitask, snunlp/KR-SBERT at their pins).

    Returns:
        ``out``.
    """
    import torch
    from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel, XLMRobertaConfig, XLMRobertaModel

    if arch not in SPECIALS:
        raise ValueError(f"unknown arch {arch!r}")
    out = Path(out)
    specials = SPECIALS[arch]
    sentences = Path(corpus).read_text(encoding="utf-8").splitlines()
    if arch == "xlm-roberta":
        vocab = [tok for tok, _ in unigram_vocab(sentences, vocab_size=vocab_size, specials=specials)]
        tokenizer = build_unigram_tokenizer(unigram_vocab(sentences, vocab_size=vocab_size, specials=specials))
    else:
        vocab = wordpiece_vocab(sentences, vocab_size=vocab_size, specials=specials)
        tokenizer = build_tokenizer(vocab, specials)
    common = dict(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=intermediate, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(seed)
    if arch == "bert":
        model = BertModel(BertConfig(max_position_embeddings=max_positions, pad_token_id=0, **common))
    else:
        pad, bos, eos = ((vocab.index("[PAD]"), vocab.index("[CLS]"), vocab.index("[SEP]")) if arch == "roberta"
                         else (vocab.index("<pad>"), vocab.index("<s>"), vocab.index("</s>")))
        config_cls, model_cls = ((RobertaConfig, RobertaModel) if arch == "roberta"
                                 else (XLMRobertaConfig, XLMRobertaModel))
        model = model_cls(config_cls(max_position_embeddings=max_positions + pad + 1, pad_token_id=pad,
                                     bos_token_id=bos, eos_token_id=eos, type_vocab_size=1, **common))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if pickle_weights:
        from safetensors.torch import load_file

        torch.save(load_file(out / "model.safetensors"), out / "pytorch_model.bin")
        (out / "model.safetensors").unlink()
    return out
