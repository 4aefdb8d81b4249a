"""Evaluation of sentence encoders on KorSTS test and KLUE-STS dev, under both protocols.

One implementation serves the evaluate, baseline and published stages and the
``simcse-ko evaluate`` command, so their numbers are comparable by construction.

Metrics JSON layout (all values x100, floats, stable keys)::

    korsts_test.avg, korsts_test.cosine_pearson, ...      headline (the `protocol` param)
    korsts_test.<key>_ci_low / _ci_high                    95% paired bootstrap interval
    korsts_test.<key>_std                                  only with several seeds
    by_protocol.card.korsts_test.<key>, by_protocol.clean...  both protocols, point values
    seeds.<seed>.korsts_test.<key>                         only with several seeds
    (the same under klue_dev)
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pipeline.data import StsSet, load_benchmark
from pipeline.mteb import MTEB_KEY
from pipeline.metrics import KEYS, SIMILARITIES, bootstrap_intervals, correlations, mean_over, pair_scores, std_over
from pipeline.params import PROTOCOLS, BootstrapConfig
from pipeline.stfolder import read_st_folder

#: metric prefix -> (benchmark kind, card label)
BENCHMARKS = {"korsts_test": ("korsts", "KorSTS test"), "klue_dev": ("klue", "KLUE-STS dev")}


def load_benchmarks(paths: Mapping[str, Path | str], protocol: str) -> dict[str, StsSet]:
    """Read the benchmarks named in ``paths`` ({"korsts_test": tsv, "klue_dev": json}) under ``protocol``."""
    return {name: load_benchmark(BENCHMARKS[name][0], path, protocol, name=name) for name, path in paths.items()}


def embedding_of(folder: Path | str, pooler: str | None = None, default: str = "cls") -> tuple[str, bool, str]:
    """(pooling, unit-normalize?, where they come from) for a model folder.

    An explicit ``pooler`` overrides the folder's sentence-transformers pooling and its
    Normalize module (origin ``"given"``); otherwise the folder's config rules (origin
    ``"folder"``), and a folder without one gets ``default`` and no normalization
    (origin ``"default"``).
    """
    if pooler is not None:
        return pooler, False, "given"
    declared = read_st_folder(folder)
    if declared.pooling is not None or declared.normalize is not None:
        return declared.pooling or default, bool(declared.normalize), "folder"
    return default, False, "default"


def score_folder(
    folder: Path | str,
    sets: Mapping[str, Mapping[str, StsSet]],
    *,
    max_len: int,
    batch_size: int,
    pooler: str,
    device: str = "cpu",
    autocast_dtype=None,
    normalize: bool | None = None,
    prefix: str = "",
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Pair scores of one model on every (protocol, benchmark) set.

    Every distinct sentence across all sets is encoded once. A folder whose
    sentence-transformers modules end in Normalize (e.g. all-MiniLM-L6-v2) is
    scored on unit vectors, as that model defines its embedding; our own models
    (and the card's) have no Normalize, so euclidean/manhattan/dot see raw vectors.

    Args:
        sets: {protocol: {benchmark: StsSet}}.
        normalize: unit-normalize the embeddings; None = as the folder's modules say.
        prefix: text put before every sentence before tokenizing (e5's ``query: ``); pairs are
            still matched on the sentences as the benchmark gives them.

    Returns:
        {protocol: {benchmark: {similarity: (N,) scores}}}
    """
    from pipeline.modeling import encode, load_encoder

    encoder, tokenizer = load_encoder(folder, pooler=pooler, device=device)
    sentences: list[str] = []
    for by_bench in sets.values():
        for sts in by_bench.values():
            sentences += sts.sentence1 + sts.sentence2
    unique = list(dict.fromkeys(sentences))
    emb = encode(encoder, tokenizer, [prefix + s for s in unique], max_len=max_len, batch_size=batch_size,
                 device=device, autocast_dtype=autocast_dtype, progress=f"encode {Path(folder).name}")
    if bool(read_st_folder(folder).normalize) if normalize is None else normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    row = {s: i for i, s in enumerate(unique)}
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for protocol, by_bench in sets.items():
        out[protocol] = {}
        for name, sts in by_bench.items():
            e1 = emb[[row[s] for s in sts.sentence1]]
            e2 = emb[[row[s] for s in sts.sentence2]]
            out[protocol][name] = pair_scores(e1, e2)
    return out


def summarize(
    sets: Mapping[str, Mapping[str, StsSet]],
    runs: Sequence[Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]],
    *,
    protocol: str,
    bootstrap: BootstrapConfig,
    run_labels: Sequence[str] | None = None,
) -> dict:
    """Metrics JSON (see module docstring) from the pair scores of one or more runs (seeds).

    Args:
        sets: {protocol: {benchmark: StsSet}} (gold scores).
        runs: per run, the output of :func:`score_folder`.
        protocol: the headline protocol.
        run_labels: names of the runs (seeds) for the per-run section.
    """
    out: dict = {"by_protocol": {}}
    for proto in sets:
        out["by_protocol"][proto] = {
            bench: mean_over([correlations(sts.scores, run[proto][bench]) for run in runs])
            for bench, sts in sets[proto].items()
        }
    for bench, sts in sets[protocol].items():
        per_run = [correlations(sts.scores, run[protocol][bench]) for run in runs]
        point = mean_over(per_run)
        ci = bootstrap_intervals(sts.scores, [run[protocol][bench] for run in runs],
                                 resamples=bootstrap.resamples, confidence=bootstrap.confidence,
                                 seed=bootstrap.seed)
        block: dict[str, float] = {}
        for key in KEYS:
            block[key] = point[key]
            block[f"{key}_ci_low"], block[f"{key}_ci_high"] = ci[key]
        if len(runs) > 1:
            for key, value in std_over(per_run).items():
                block[f"{key}_std"] = value
        out[bench] = block
    if len(runs) > 1:
        labels = list(run_labels or [str(i) for i in range(len(runs))])
        out["seeds"] = {
            label: {bench: correlations(sts.scores, run[protocol][bench]) for bench, sts in sets[protocol].items()}
            for label, run in zip(labels, runs)
        }
    return out


def all_protocol_sets(paths: Mapping[str, Path | str]) -> dict[str, dict[str, StsSet]]:
    """Benchmarks read under every protocol: {protocol: {benchmark: StsSet}}."""
    return {proto: load_benchmarks(paths, proto) for proto in PROTOCOLS}


def write_predictions(folder: Path, label: str, sets: Mapping[str, StsSet],
                      scores: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Per-pair gold and similarity scores (TSV, exact float repr) for plots and paired comparisons."""
    folder.mkdir(parents=True, exist_ok=True)
    for bench, sts in sets.items():
        lines = ["pair\tgold\t" + "\t".join(SIMILARITIES)]
        for i in range(len(sts)):
            values = [float(sts.scores[i])] + [float(scores[bench][s][i]) for s in SIMILARITIES]
            lines.append(f"{i}\t" + "\t".join(repr(v) for v in values))
        (folder / f"{bench}.{label}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_predictions(path: Path | str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Inverse of :func:`write_predictions` for one file: (gold (N,), {similarity: (N,)})."""
    return parse_predictions(Path(path).read_text(encoding="utf-8"))


def parse_predictions(text: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`read_predictions` on a file's text (e.g. read from an experiment's revision)."""
    rows = text.splitlines()
    header = rows[0].split("\t")
    table = np.array([[float(x) for x in r.split("\t")] for r in rows[1:]], dtype=np.float64).reshape(-1, len(header))
    cols = {name: table[:, i] for i, name in enumerate(header)}
    return cols["gold"], {s: cols[s] for s in SIMILARITIES}


def evaluate_folders(
    folders: Sequence[Path | str],
    paths: Mapping[str, Path | str],
    *,
    protocol: str,
    max_len: int,
    batch_size: int,
    bootstrap: BootstrapConfig,
    default_pooler: str = "cls",
    labels: Sequence[str] | None = None,
    predictions_dir: Path | None = None,
    device: str = "cpu",
    pooler: str | None = None,
    normalize: bool | None = None,
    prefix: str = "",
    mteb_rows: Mapping[str, StsSet] | None = None,
) -> dict:
    """Evaluate one model (or one per seed) on the benchmarks; return the metrics JSON.

    Args:
        folders: local model folders; several are averaged (seeds).
        paths: {"korsts_test": tsv, "klue_dev": json} (either may be omitted).
        protocol: headline protocol (``card`` or ``clean``); both are computed.
        max_len: truncation length (tokens).
        batch_size: encoding batch size.
        bootstrap: interval settings.
        default_pooler: pooling for folders without a sentence-transformers config.
        pooler: if given, this pooling without normalization, whatever the folders' configs say
            (see :func:`embedding_of`).
        normalize: if given, unit-normalize (or not) whatever the pooling's origin says.
        prefix: see :func:`score_folder`.
        labels: run names (e.g. ``seed-42``) for predictions and the per-seed section.
        predictions_dir: if given, per-pair predictions (headline protocol) go here.
        mteb_rows: {benchmark: MTEB's own rows} (:func:`pipeline.mtebrows.read_rows`); if given, the
            metrics JSON gets ``mteb.<benchmark>.<MTEB score key>`` (fractions, mean over the runs).
    """
    sets = all_protocol_sets(paths)
    # encoded in the same pass as the benchmarks (score_folder encodes each distinct sentence once),
    # under a key no protocol uses, so summarize never sees them
    encoded = {**sets, MTEB_KEY: dict(mteb_rows)} if mteb_rows else sets
    labels = list(labels or [f"run-{i}" for i in range(len(folders))])
    runs = []
    for folder, label in zip(folders, labels):
        pooling, unit, _ = embedding_of(folder, pooler, default_pooler)
        scores = score_folder(folder, encoded, max_len=max_len, batch_size=batch_size, pooler=pooling,
                              normalize=unit if normalize is None else normalize, device=device, prefix=prefix)
        runs.append(scores)
        if predictions_dir is not None:
            write_predictions(predictions_dir, label, sets[protocol], scores[protocol])
    metrics = summarize(sets, runs, protocol=protocol, bootstrap=bootstrap, run_labels=labels)
    if mteb_rows:
        metrics[MTEB_KEY] = mteb_summary(mteb_rows, [run[MTEB_KEY] for run in runs])
    return metrics


def mteb_summary(rows: Mapping[str, StsSet], runs: Sequence[Mapping[str, Mapping[str, np.ndarray]]]) -> dict:
    """MTEB's scores per benchmark (:func:`pipeline.mtebrows.task_scores`), mean over the runs (seeds).

    Args:
        rows: {benchmark: MTEB's rows}.
        runs: per run, {benchmark: {similarity: (N,) pair scores}} on those rows.
    """
    from pipeline.mtebrows import task_scores

    out = {}
    for bench, sts in rows.items():
        per_run = [task_scores(sts.scores, run[bench]) for run in runs]
        out[bench] = {key: float(np.mean([r[key] for r in per_run])) for key in per_run[0]}
    return out


def format_rows(metrics: Mapping, name: str) -> list[str]:
    """Card-style table rows (one per benchmark) with ± bootstrap half-widths, for the terminal."""
    from pipeline.card import COLUMN_TITLES

    lines = []
    for bench, (_, title) in BENCHMARKS.items():
        if bench not in metrics:
            continue
        block = metrics[bench]
        cells = []
        for key in KEYS:
            half = (block[f"{key}_ci_high"] - block[f"{key}_ci_low"]) / 2
            cells.append(f"{block[key]:.2f} ± {half:.2f}")
        lines.append(f"{title}")
        lines.append("| Model | " + " | ".join(COLUMN_TITLES) + " |")
        lines.append("|" + "---|" * (len(KEYS) + 1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
