"""Results in MTEB's format: one JSON per task (KorSTS, KLUE-STS) per evaluated model.

MTEB (the Massive Text Embedding Benchmark) has two Korean STS tasks, read from
its task definitions (mteb 1.12.94, ``mteb/tasks/STS/kor/``):

* ``KorSTS``: hub dataset ``dkoterwa/kor-sts`` (revision ``016f35f9…``), split
  ``test``, 1,379 pairs, sentences as published.
* ``KLUE-STS``: hub dataset ``klue/klue`` config ``sts`` (revision ``349481ec…``),
  split ``validation``, 519 pairs, gold score ``labels.label``.

Both have main score cosine Spearman, gold scores rescaled to [0, 1] (which no
correlation sees) and negated euclidean/manhattan distances, like ours. So the
protocol that matches MTEB is ``clean`` for KorSTS (no punctuation deleted) and
``card`` for KLUE-STS (``labels.label``): :data:`TASKS` picks those blocks of the
metrics JSON. Scores are fractions (0-1) as MTEB writes them, not x100. Our
files come from the GitHub sources in params.yaml, so ``dataset_revision`` is
that source's revision, not the hub dataset's (same row counts; the rows
themselves were not compared with the hub copies, which need the hub).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_json
from pipeline.metrics import COLUMNS

#: benchmark -> MTEB task: name, split, hub dataset (type, config, revision), the protocol that matches
#: it, and its pair count (MTEB's descriptive_stats n_samples)
TASKS = {
    "korsts_test": {"name": "KorSTS", "split": "test", "dataset": "dkoterwa/kor-sts", "config": "default",
                    "revision": "016f35f9b961daaaa7a352e927084e3da662ac1f", "protocol": "clean", "rows": 1379},
    "klue_dev": {"name": "KLUE-STS", "split": "validation", "dataset": "klue/klue", "config": "default",
                 "revision": "349481ec73fff722f88e0453ca05c77a447d967c", "protocol": "card", "rows": 519},
}
#: what MTEB writes when a model has no revision (our trained variants)
NO_REVISION = "no_revision_available"
MTEB_VERSION = "1.12.94"  # the version whose task definitions and result format these files follow


def folder_name(model: str) -> str:
    """MTEB's results folder for a model: ``org/name`` -> ``org__name``."""
    return model.replace("/", "__")


def mteb_scores(metrics: dict, bench: str) -> dict[str, float]:
    """The scores of one task as MTEB names them (fractions), from a metrics JSON (x100).

    ``pearson``/``spearman`` are MTEB's "the model's own similarity" scores, cosine for these models.
    """
    block = metrics["by_protocol"][TASKS[bench]["protocol"]][bench]
    scores = {key: block[key] / 100 for key in COLUMNS}
    return {"pearson": scores["cosine_pearson"], "spearman": scores["cosine_spearman"], **scores,
            "main_score": scores["cosine_spearman"]}


def task_result(metrics: dict, bench: str, *, dataset_revision: str | None, evaluation_time: float | None) -> dict:
    """One MTEB task result (``TaskResult``/``MTEBResults`` JSON) from a metrics JSON."""
    task = TASKS[bench]
    return {
        "dataset_revision": dataset_revision or "unknown",
        "task_name": task["name"],
        "mteb_version": MTEB_VERSION,
        "scores": {task["split"]: [{**mteb_scores(metrics, bench), "hf_subset": "default",
                                    "languages": ["kor-Hang"]}]},
        "evaluation_time": evaluation_time,
        "kg_co2_emissions": None,
    }


def model_index_entry(metrics: dict, bench: str) -> dict:
    """A model card ``model-index`` result as ``mteb create_meta`` writes it: MTEB's task and dataset
    names, every score x100."""
    task = TASKS[bench]
    return {
        "task": {"type": "STS"},
        "dataset": {"type": task["dataset"], "name": f"MTEB {task['name']} ({task['config']})",
                    "config": task["config"], "split": task["split"], "revision": task["revision"]},
        "metrics": [{"type": key, "value": round(value * 100, 2)}
                    for key, value in mteb_scores(metrics, bench).items()],
    }


def write_results(out: Path, models: dict[str, dict], data_revisions: dict[str, str | None]) -> list[Path]:
    """Write ``out/<model>/<revision>/<task>.json`` (MTEB's results layout) for every model.

    Args:
        models: {model name: {"metrics": metrics JSON, "revision": commit or None,
            "seconds": evaluation wall time or None}}.
        data_revisions: {benchmark: revision of its source file (data/raw/manifest.json)}.

    Returns:
        the files written.
    """
    written = []
    for name, entry in models.items():
        folder = out / folder_name(name) / (entry.get("revision") or NO_REVISION)
        for bench, task in TASKS.items():
            if bench not in entry["metrics"].get("by_protocol", {}).get(task["protocol"], {}):
                continue
            path = folder / f"{task['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, task_result(entry["metrics"], bench, dataset_revision=data_revisions.get(bench),
                                         evaluation_time=entry.get("seconds")))
            written.append(path)
    return written

