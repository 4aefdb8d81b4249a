"""Results in MTEB's format: one JSON per task (KorSTS, KLUE-STS) per evaluated model.

MTEB (the Massive Text Embedding Benchmark) has two Korean STS tasks, read from
its task definitions (mteb 1.12.94 ``mteb/tasks/STS/kor/``, unchanged in mteb 2):

* ``KorSTS``: hub dataset ``dkoterwa/kor-sts`` (revision ``016f35f9…``), split
  ``test``, 1,376 pairs (mteb's ``descriptive_stats/STS/KorSTS.json``; mteb 1.12.94's
  hand-written ``n_samples`` said 1,379), sentences as published. The kakaobrain
  GitHub file the card's tables use has 1,379: the same rows plus three.
* ``KLUE-STS``: hub dataset ``klue/klue`` config ``sts`` (revision ``349481ec…``),
  split ``validation``, 519 pairs, gold score ``labels.label``.

Both have main score cosine Spearman; gold scores rescaled to [0, 1]; cosine,
negated euclidean and negated manhattan distances (mteb reports no dot product).
Scores are fractions (0-1) as MTEB writes them, not x100.

Which rows the scores come from: when the ``mteb_rows`` stage loaded MTEB's own rows
(:mod:`pipeline.mtebrows`), every evaluation stage scored the models on them too
(``metrics["mteb"]``) and the files name MTEB's dataset and revision. Otherwise
the scores are our own on the GitHub files (KorSTS sentences as published =
protocol ``clean``; KLUE-STS ``labels.label`` = protocol ``card``), and the files
say so, naming that file, its commit, sha256 and row count, never MTEB's dataset.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_json

#: benchmark -> MTEB task: name, split, hub dataset (path, revision, the `datasets` config it loads when not the
#: default), MTEB's hf_subset ("config", as `mteb create_meta` writes it), the protocol of ours that
#: is closest to it (used only without MTEB's rows), and its pair count (mteb's descriptive_stats num_samples)
TASKS = {
    "korsts_test": {"name": "KorSTS", "split": "test", "dataset": "dkoterwa/kor-sts", "config": "default",
                    "revision": "016f35f9b961daaaa7a352e927084e3da662ac1f", "protocol": "clean", "rows": 1376},
    "klue_dev": {"name": "KLUE-STS", "split": "validation", "dataset": "klue/klue", "config": "default",
                 "load_config": "sts",
                 "revision": "349481ec73fff722f88e0453ca05c77a447d967c", "protocol": "card", "rows": 519},
}
#: what MTEB writes when a model has no revision (our trained variants)
NO_REVISION = "no_revision_available"
MTEB_VERSION = "1.12.94"  # the version whose task definitions and result format these files follow
#: metrics JSON key of the scores on MTEB's own rows (pipeline.evaluate.evaluate_folders)
MTEB_KEY = "mteb"
#: MTEB's STS score keys in the order it writes them (STSEvaluator: no dot product)
SCORE_KEYS = ("pearson", "spearman", "cosine_pearson", "cosine_spearman", "manhattan_pearson",
              "manhattan_spearman", "euclidean_pearson", "euclidean_spearman")


def folder_name(model: str) -> str:
    """MTEB's results folder for a model: ``org/name`` -> ``org__name``."""
    return model.replace("/", "__")


def data_used(metrics: dict, bench: str, rows: dict, manifest: dict) -> dict:
    """Which rows a model's scores on ``bench`` are (to be) computed on.

    Args:
        metrics: the model's metrics JSON.
        rows: the ``mteb_rows`` stage's records without rows (:func:`pipeline.mtebrows.provenance`).
        manifest: data/raw/manifest.json ``files``.

    Returns:
        {"mteb_rows": True, "dataset", "config", "revision", "split", "rows"} when the model was scored
        on MTEB's rows, else {"mteb_rows": False, "source", "revision", "sha256", "rows", "protocol"}.
    """
    entry = rows.get(bench, {})
    if entry.get("loaded") and bench in metrics.get(MTEB_KEY, {}):
        return {"mteb_rows": True, **{k: entry[k] for k in ("dataset", "config", "revision", "split")},
                "rows": entry["statistics"]["num_samples"]}
    from pipeline.provenance import source_label

    source = manifest.get(bench, {})
    return {"mteb_rows": False, **{k: source.get(k) for k in ("revision", "sha256", "rows")},
            # a local file by its name only: model cards and results leave this machine
            "source": source_label(source["source"]) if source.get("source") else None,
            "protocol": TASKS[bench]["protocol"]}


def mteb_scores(metrics: dict, bench: str, data: dict) -> dict[str, float]:
    """The scores of one task as MTEB names them (fractions), from a metrics JSON.

    On MTEB's rows, ``metrics["mteb"]`` (already MTEB's keys); otherwise the protocol block closest
    to MTEB's (x100 there). ``pearson``/``spearman`` are the model's own similarity, cosine here.
    """
    if data["mteb_rows"]:
        scores = dict(metrics[MTEB_KEY][bench])
    else:
        block = metrics["by_protocol"][TASKS[bench]["protocol"]][bench]
        scores = {key: block[key] / 100 for key in SCORE_KEYS[2:]}
        scores["pearson"], scores["spearman"] = scores["cosine_pearson"], scores["cosine_spearman"]
    return {**{key: scores[key] for key in SCORE_KEYS}, "main_score": scores["cosine_spearman"]}


def _our_file(data: dict) -> str:
    """Our benchmark file as the fallback files name it (the manifest's URL, commit, sha256, rows)."""
    if not data.get("source"):
        return "our GitHub benchmark file (provenance not recorded); not the dataset MTEB's task reads"
    return (f"{data['source']} (commit {data['revision'] or 'none recorded'}, sha256 {data['sha256']}, "
            f"{data['rows']} pairs; not the dataset MTEB's task reads)")


def task_result(metrics: dict, bench: str, *, data: dict, evaluation_time: float | None) -> dict:
    """One MTEB task result (``TaskResult``/``MTEBResults`` JSON) from a metrics JSON.

    ``data`` (:func:`data_used`) names the rows: ``dataset_revision`` is MTEB's dataset revision only
    when the scores are on MTEB's rows; otherwise our file's commit, and ``evaluated_on`` says which file.
    """
    task = TASKS[bench]
    result = {
        "dataset_revision": (data["revision"] or "unknown"),
        "task_name": task["name"],
        "mteb_version": MTEB_VERSION,
        "scores": {task["split"]: [{**mteb_scores(metrics, bench, data), "hf_subset": "default",
                                    "languages": ["kor-Hang"]}]},
        "evaluation_time": evaluation_time,
        "kg_co2_emissions": None,
    }
    result["evaluated_on"] = (f"{data['dataset']} ({data['config']}, split {data['split']}, {data['rows']} pairs)"
                              if data["mteb_rows"] else _our_file(data))
    return result


def model_index_entry(metrics: dict, bench: str, data: dict) -> dict:
    """A model card ``model-index`` result as ``mteb create_meta`` writes it, every score x100: MTEB's task
    and dataset names on MTEB's rows; otherwise the file the scores were computed on, without MTEB's name."""
    task = TASKS[bench]
    if data["mteb_rows"]:
        dataset = {"type": data["dataset"], "name": f"MTEB {task['name']} ({task['config']})",
                   "config": data["config"], "split": data["split"], "revision": data["revision"]}
    else:
        dataset = {"type": data["source"] or "unknown", "name": f"{task['name']} {task['split']}: {_our_file(data)}",
                   "split": task["split"], "revision": data["revision"]}
    return {"task": {"type": "STS"}, "dataset": dataset,
            "metrics": [{"type": key, "value": round(value * 100, 2)}
                        for key, value in mteb_scores(metrics, bench, data).items()]}


def has_scores(metrics: dict, bench: str) -> bool:
    """Whether a metrics JSON holds scores for ``bench`` (on MTEB's rows or under the closest protocol)."""
    return bench in metrics.get(MTEB_KEY, {}) or bench in metrics.get("by_protocol", {}).get(
        TASKS[bench]["protocol"], {})


def write_results(out: Path, models: dict[str, dict], rows: dict, manifest: dict) -> list[Path]:
    """Write ``out/<model>/<revision>/<task>.json`` (MTEB's results layout) for every model.

    Args:
        models: {model name: {"metrics": metrics JSON, "revision": commit or None,
            "seconds": evaluation wall time or None}}.
        rows, manifest: see :func:`data_used`.

    Returns:
        the files written.
    """
    written = []
    for name, entry in models.items():
        folder = out / folder_name(name) / (entry.get("revision") or NO_REVISION)
        for bench, task in TASKS.items():
            if not has_scores(entry["metrics"], bench):
                continue
            path = folder / f"{task['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, task_result(entry["metrics"], bench, data=data_used(entry["metrics"], bench, rows, manifest),
                                         evaluation_time=entry.get("seconds")))
            written.append(path)
    return written
