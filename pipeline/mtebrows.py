"""MTEB's own rows of its KorSTS and KLUE-STS tasks, their descriptive statistics, and MTEB's STS scores.

MTEB's ``KorSTS`` reads ``dkoterwa/kor-sts`` (split ``test``, 1,376 pairs), not the kakaobrain
GitHub file the card's tables use (1,379 pairs): mteb's published descriptive statistics
(``mteb/descriptive_stats/STS/KorSTS.json``) are exactly those of the kakaobrain file without
three of its rows. So MTEB-format results must be computed on MTEB's rows, read here with
``datasets.load_dataset`` at the revisions mteb pins (:data:`pipeline.mteb.TASKS`).

Loading needs the hub. When it fails, :func:`load_all` records why and the MTEB-format files
fall back to our GitHub files, labelled as such (see :mod:`pipeline.mteb`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
from scipy import stats

from pipeline.data import StsSet
from pipeline.errors import UserError
from pipeline.mteb import SCORE_KEYS, TASKS
from pipeline.provenance import source_label

#: MTEB's STS similarities (mteb's STSEvaluator reports no dot product)
MTEB_SIMILARITIES = ("cosine", "manhattan", "euclidean")
#: the gold score range mteb's AbsTaskSTS normalises with (min_score/max_score of both tasks)
MIN_SCORE, MAX_SCORE = 0.0, 5.0


def rows_from_columns(bench: str, columns: Mapping[str, list], where: str) -> StsSet:
    """An :class:`StsSet` from a dataset's columns, read as mteb reads that task.

    KorSTS: ``sentence1``, ``sentence2``, ``score``; KLUE-STS: the gold score is
    ``labels.label`` (mteb's ``KlueSTS.dataset_transform``).

    Raises:
        UserError: a missing column or an empty split (naming ``where``).
    """
    score_col = "labels" if bench == "klue_dev" else "score"
    for col in ("sentence1", "sentence2", score_col):
        if col not in columns:
            raise UserError(f"{where}: no column {col!r}; expected sentence1, sentence2 and {score_col} "
                            f"(found {', '.join(columns) or 'none'})")
    gold = [row["label"] for row in columns["labels"]] if bench == "klue_dev" else list(columns["score"])
    if not gold:
        raise UserError(f"{where}: no rows")
    return StsSet(bench, [str(s) for s in columns["sentence1"]], [str(s) for s in columns["sentence2"]],
                  np.asarray(gold, dtype=np.float64))


def load_task_rows(bench: str, local: Path | str | None = None) -> StsSet:
    """MTEB's rows of one task: ``datasets.load_dataset(path, config, revision=..., split=...)``.

    Args:
        bench: ``korsts_test`` or ``klue_dev`` (a key of :data:`pipeline.mteb.TASKS`).
        local: a local dataset folder (parquet/json/csv files, as ``datasets`` reads a folder) used
            instead of the hub, e.g. in tests; its split must be the task's split.

    Returns:
        the rows as an :class:`StsSet` (raw gold scores, 0-5).
    """
    import datasets

    task = TASKS[bench]
    if local is not None:
        data = datasets.load_dataset(str(local), split=task["split"])
        where = f"{local} (split {task['split']})"
    else:
        config = task.get("load_config") or (None if task["config"] == "default" else task["config"])
        data = datasets.load_dataset(task["dataset"], config, revision=task["revision"], split=task["split"])
        where = f"hub dataset {task['dataset']}@{task['revision']} (split {task['split']})"
    return rows_from_columns(bench, data.to_dict(), where)


def _text_statistics(texts: list[str]) -> dict:
    lengths = [len(t) for t in texts]
    return {"total_text_length": sum(lengths), "min_text_length": min(lengths),
            "average_text_length": sum(lengths) / len(lengths), "max_text_length": max(lengths),
            "unique_texts": len(set(texts))}


def descriptive_statistics(sts: StsSet) -> dict:
    """mteb's STS descriptive statistics of one split (``mteb/descriptive_stats/STS/<task>.json``):
    character counts are ``len(text)``, ``unique_pairs`` counts distinct (sentence1, sentence2), the
    score statistics are of the raw (unnormalised) gold scores."""
    one, two = _text_statistics(sts.sentence1), _text_statistics(sts.sentence2)
    scores = [float(x) for x in sts.scores]
    return {"num_samples": len(sts), "number_of_characters": one["total_text_length"] + two["total_text_length"],
            "unique_pairs": len(set(zip(sts.sentence1, sts.sentence2))),
            "text1_statistics": one, "text2_statistics": two,
            "label_statistics": {"min_score": min(scores), "avg_score": sum(scores) / len(scores),
                                 "max_score": max(scores)}}


def task_scores(gold: np.ndarray, scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """MTEB's STS scores (fractions, not x100) from one model's pair scores, as mteb computes them.

    Gold scores are rescaled to [0, 1] by the task's min/max score (AbsTaskSTS); cosine, negated
    manhattan and negated euclidean distances are each correlated with them (scipy pearsonr and
    spearmanr, STSEvaluator); ``pearson``/``spearman`` are the model's own similarity, cosine for
    sentence-transformers models; ``main_score`` is ``cosine_spearman``.

    Args:
        gold: (N,) raw gold scores (0-5).
        scores: {similarity: (N,)} from :func:`pipeline.metrics.pair_scores`.
    """
    normalised = (np.asarray(gold, dtype=np.float64) - MIN_SCORE) / (MAX_SCORE - MIN_SCORE)
    out: dict[str, float] = {}
    for sim in MTEB_SIMILARITIES:
        out[f"{sim}_pearson"] = float(stats.pearsonr(normalised, scores[sim])[0])
        out[f"{sim}_spearman"] = float(stats.spearmanr(normalised, scores[sim])[0])
    out["pearson"], out["spearman"] = out["cosine_pearson"], out["cosine_spearman"]
    return {**{key: out[key] for key in SCORE_KEYS}, "main_score": out["cosine_spearman"]}


def load_all(local: Mapping[str, Path | str] | None = None) -> dict[str, dict]:
    """Both tasks' rows with their provenance, or why they could not be loaded (never raises on the hub).

    Args:
        local: {benchmark: local dataset folder} replacing the hub (tests).

    Returns:
        {benchmark: {"loaded": True, "dataset", "config", "revision", "split", "statistics", "rows":
        [[sentence1, sentence2, score], ...]}} or {benchmark: {"loaded": False, "reason": one line}}.
    """
    out: dict[str, dict] = {}
    for bench, task in TASKS.items():
        source = (local or {}).get(bench)
        try:
            sts = load_task_rows(bench, source)
        except UserError:
            raise  # the dataset loaded but is not what mteb reads: a real problem, not an offline hub
        except Exception as exc:  # noqa: BLE001 - any hub/network/cache failure must only cost the MTEB rows
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            out[bench] = {"loaded": False, "reason": reason[:300]}
            continue
        # a local folder is named as such, never as MTEB's dataset
        out[bench] = rows_record(bench, sts, dataset=source_label(str(source)) if source else task["dataset"],
                                 revision=None if source else task["revision"])
    return out


def rows_record(bench: str, sts: StsSet, *, dataset: str, revision: str | None) -> dict:
    """One task's entry of the rows file: where the rows come from, their statistics, the rows."""
    task = TASKS[bench]
    return {"loaded": True, "dataset": dataset, "config": task["config"], "revision": revision,
            "split": task["split"], "statistics": descriptive_statistics(sts),
            "rows": [[a, b, float(s)] for a, b, s in zip(sts.sentence1, sts.sentence2, sts.scores)]}


def read_rows(path: Path | str | None) -> dict[str, StsSet]:
    """The loaded tasks' rows from a file written by the ``mteb_rows`` stage ({} for none or no file)."""
    if path is None or not Path(path).is_file():
        return {}
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return {bench: StsSet(bench, [r[0] for r in entry["rows"]], [r[1] for r in entry["rows"]],
                          np.asarray([r[2] for r in entry["rows"]], dtype=np.float64))
            for bench, entry in record.items() if entry.get("loaded")}


def provenance(path: Path | str | None) -> dict[str, dict]:
    """The rows file's records without the rows: {benchmark: {loaded, dataset, revision, ...}}."""
    if path is None or not Path(path).is_file():
        return {}
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return {bench: {k: v for k, v in entry.items() if k != "rows"} for bench, entry in record.items()}
