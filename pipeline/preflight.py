"""`simcse-ko preflight`: check the machine and every input before the GPU hour starts.

One :class:`Check` per line: the params, the device (CUDA, GPU, memory,
torch/CUDA versions, bf16/fp16) and ``nproc`` against the visible GPUs, every
source in params.yaml (reachable, its size, a local copy in data/raw against its
pinned sha256), every base model and published checkpoint (the revision
resolves to a commit; config, weights and tokenizer are there), every compared
model's sentence-transformers files read as the compare stage reads them (a pooling
or Normalize contradicting params.yaml fails here, before any training), free disk
against what the run writes, and the wall time per stage estimated from
``reports/bench/``. Nothing is downloaded but config files (into the hub cache);
nothing is written in the project.

The device probe is an argument, so tests simulate a CUDA machine or a
CPU-only one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from pipeline import estimate
from pipeline.download import remote_size, resolve_source, sha256_file
from pipeline.errors import UserError
from pipeline.hub import HUB_ID, ST_FILES, fetch_hub_files, is_commit, read_hub_config, repo_listing, required_files
from pipeline.hubeval import Encoder, embedding_for, embedding_text, read_compare
from pipeline.params import Params, check_choice, effective_seeds, train_config
from pipeline.sources import file_name, resolved_sources
from pipeline.stfolder import SAFETENSORS

DEVICES = ("cuda", "cpu")
#: One retry per hub call, not the stages' four: a preflight should answer in seconds when the hub is down.
HUB_RETRIES = 1


@dataclass(frozen=True)
class Check:
    """One line of the preflight: ``status`` is ok, fail or info (an estimate, never fails)."""

    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status.upper() if self.status == 'fail' else self.status:<5} {self.name}: {self.detail}"


@dataclass(frozen=True)
class DeviceInfo:
    """What torch sees: its version, the CUDA version it was built with, the visible GPUs."""

    torch: str
    cuda: str | None
    gpus: tuple[str, ...] = ()
    memory: int | None = None  # bytes on the first GPU
    capability: tuple[int, int] | None = None
    bf16: bool = False
    fp16: bool = False


def probe_device() -> DeviceInfo:
    """The real device, through torch (CUDA is not initialised when no GPU is visible)."""
    import torch

    if not torch.cuda.is_available():
        return DeviceInfo(torch=torch.__version__, cuda=torch.version.cuda)
    props = torch.cuda.get_device_properties(0)
    capability = (props.major, props.minor)
    return DeviceInfo(torch=torch.__version__, cuda=torch.version.cuda,
                      gpus=tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())),
                      memory=props.total_memory, capability=capability, bf16=torch.cuda.is_bf16_supported(),
                      fp16=capability >= (5, 3))  # half arithmetic needs compute capability 5.3


def check_device(info: DeviceInfo, *, device: str, precision: str) -> Check:
    """CUDA present (when params ``device`` is cuda), which GPU, and the ``precision`` it supports."""
    built = f"torch {info.torch}" + (f", CUDA {info.cuda}" if info.cuda else " (a CPU-only build)")
    if device == "cpu":
        unused = f"; {len(info.gpus)} GPU(s) visible but unused" if info.gpus else ""
        return Check("device", "ok", f"cpu (params device: cpu), {built}{unused}")
    if not info.gpus:
        return Check("device", "fail",
                     f"CPU-only machine: {built} sees no CUDA GPU, but params device is cuda "
                     "(install a CUDA build of torch, check CUDA_VISIBLE_DEVICES, or set device: cpu)")
    memory = f"{info.memory / 2**30:.1f} GiB" if info.memory else "memory unknown"
    cc = f"compute capability {info.capability[0]}.{info.capability[1]}, " if info.capability else ""
    detail = (f"{info.gpus[0]} x{len(info.gpus)}, {memory}, {cc}{built}, bf16 {'yes' if info.bf16 else 'no'}, "
              f"fp16 {'yes' if info.fp16 else 'no'}")
    if precision in ("bf16", "fp16") and not getattr(info, precision):
        other = "fp16" if precision == "bf16" else "fp32"
        return Check("device", "fail",
                     f"{detail}; precision {precision} is not supported here (set precision: {other})")
    return Check("device", "ok", f"{detail}; precision {precision}")


def check_nproc(info: DeviceInfo, *, device: str, nproc: int) -> Check:
    """``nproc`` processes need as many visible GPUs on CUDA (on CPU they share the cores)."""
    if device == "cpu":
        return Check("nproc", "ok", f"{nproc} process(es) on CPU")
    if not info.gpus:
        return Check("nproc", "info", f"nproc = {nproc}, not checked: no GPU visible (see device)")
    if nproc > len(info.gpus):
        return Check("nproc", "fail", f"nproc = {nproc} but {len(info.gpus)} GPU(s) visible; "
                                      f"expected nproc <= {max(len(info.gpus), 1)}")
    return Check("nproc", "ok", f"{nproc} <= {len(info.gpus)} visible GPU(s)")


def check_source(key: str, entry: dict, *, root: Path) -> tuple[Check, int | None]:
    """Source ``key`` is reachable (HEAD or a one-byte GET); a local copy in data/raw matches its pin."""
    name = f"sources.{key}"
    try:
        url = resolve_source(entry["url"], entry.get("revision"), base=root)
        size = remote_size(url)
    except UserError as exc:
        return Check(name, "fail", str(exc)), None
    said = estimate.human_bytes(size) if size is not None else "size not given"
    pinned = entry.get("sha256")
    local = root / "data" / "raw" / file_name(key)
    if not local.is_file():
        copy = "no local copy yet"
    elif not pinned:
        copy = f"local copy data/raw/{local.name} not pinned (run `simcse-ko pin` after the download)"
    else:
        digest = sha256_file(local)
        if digest != pinned.lower():
            return Check(name, "fail", f"{url} reachable ({said}), but the local copy data/raw/{local.name} has "
                                       f"sha256 {digest}, expected the pinned {pinned.lower()}"), size
        copy = f"local copy data/raw/{local.name} matches"
    return Check(name, "ok", f"{url} reachable ({said}), sha256 {'pinned' if pinned else 'not pinned'}; {copy}"), size


def _local_files(folder: Path) -> tuple[dict[str, int], dict]:
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    config = folder / "config.json"
    return files, json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}


def check_model(name: str, model: str, revision: str | None, *, root: Path) -> tuple[Check, estimate.ModelSize | None]:
    """A local folder or a hub id at ``revision``: the revision resolves, the files the pipeline reads are there."""
    folder = Path(model) if Path(model).is_absolute() else root / model
    try:
        if folder.is_dir():
            files, config = _local_files(folder)
            where = f"local folder {model}"
        elif HUB_ID.match(model):
            revision = revision or "main"
            commit, files = repo_listing(model, revision, retries=HUB_RETRIES)
            where = f"{model}@{revision}: commit {commit}" if is_commit(revision) else \
                f"{model}@{revision}: branch, resolves to {commit} (pin it)"
            config = read_hub_config(model, commit, retries=HUB_RETRIES) if "config.json" in files else {}
        else:
            raise UserError(f"{model}: not a local folder and not a hub id (expected org/name)")
        weights, tokenizer = required_files(files, f"{model}@{revision}" if revision else model)
        total, nonembedding = estimate.param_counts(config)
    except UserError as exc:
        return Check(name, "fail", str(exc)), None
    except KeyError as exc:
        return Check(name, "fail", f"{model}: config.json has no {exc}; expected a BERT/RoBERTa config"), None
    # safetensors is what the pipeline stores; a pickle or an unlisted size counts fp32 parameters
    size = files.get(weights) if weights == SAFETENSORS and files.get(weights) else total * 4
    detail = (f"{where}; {weights} ({estimate.human_bytes(size)}, {total / 1e6:.1f}M parameters), "
              f"tokenizer {' + '.join(tokenizer)}")
    return Check(name, "ok", detail), estimate.ModelSize(bytes=size, nonembedding=nonembedding)


def check_compared(entry: Encoder, *, root: Path) -> tuple[Check, estimate.ModelSize | None]:
    """:func:`check_model`, then the embedding the compare stage will use: the repository's
    sentence-transformers files fetched (no weights) and read against params.yaml's entry."""
    import tempfile

    name = f"compare {entry.id}"
    check, size = check_model(name, entry.id, entry.revision or None, root=root)
    if check.status != "ok":
        return check, size
    try:
        commit, files = repo_listing(entry.id, entry.revision or "main", retries=HUB_RETRIES)
        with tempfile.TemporaryDirectory(prefix="preflight-st-") as tmp:
            fetch_hub_files(entry.id, commit, [n for n in ST_FILES if n in files], Path(tmp), retries=HUB_RETRIES)
            embedding = embedding_for(entry, tmp)
    except UserError as exc:
        return Check(name, "fail", str(exc)), size
    text = embedding_text({"pooling": embedding.pooling, "normalize": embedding.normalize,
                           "prefix": embedding.prefix})
    return Check(name, "ok", f"{check.detail}; embedding {text}, from {embedding.origin}"), size


def _train_examples(root: Path, kind: str) -> tuple[int, str]:
    """Training examples of ``kind`` from data/train's manifest if it exists, else the card's count."""
    manifest = root / "data" / "train" / kind / "manifest.json"
    if manifest.is_file():
        record = json.loads(manifest.read_text(encoding="utf-8"))
        return int(record["sentences" if kind == "wiki" else "triplets"]), f"data/train/{kind}"
    return estimate.CARD_EXAMPLES[kind], "the card's count"


def verdict(checks: Iterable[Check]) -> tuple[str, list[str]]:
    """(the verdict line, one ``error:`` line per failed check)."""
    checks = list(checks)
    failed = [c for c in checks if c.status == "fail"]
    counted = [c for c in checks if c.status != "info"]
    if failed:
        line = (f"verdict: NOT READY: {len(failed)} of {len(counted)} checks failed "
                f"({', '.join(c.name for c in failed)})")
    else:
        line = f"verdict: ready: all {len(counted)} checks passed"
    return line, [f"error: {c.name}: {c.detail}" for c in failed]


@dataclass(frozen=True)
class Plan:
    """What params.yaml asks for, validated: the inputs of every check."""

    device: str
    precision: str
    nproc: int
    seeds: int
    sources: dict
    configs: dict  # variant -> TrainConfig
    revisions: dict
    published: dict  # variant -> {id, revision}; empty when published.enabled is false
    compare: dict  # hub id -> its validated `compare` entry (pipeline.hubeval.Encoder)


def read_plan(params: Params) -> Plan:
    """Validate the params preflight needs (the validate stage checks the rest); UserError if invalid."""
    src = params.source
    sources = resolved_sources(params)
    configs = {name: train_config(params, name) for name in params.variant_names()}
    first = next(iter(configs.values()))
    revisions = params.get("model_revisions") or {}
    if not isinstance(revisions, dict):
        raise UserError(f"{src}: model_revisions must map a hub id to a commit or branch")
    published = {}
    if params.get("published.enabled"):
        published = params.get("published.checkpoints")
        if not isinstance(published, dict) or not all(isinstance(v, dict) and "id" in v for v in published.values()):
            raise UserError(f"{src}: published.checkpoints must map a variant to {{id, revision}}")
    compare = {e.id: e for e in read_compare(params)}
    return Plan(device=check_choice(src, "device", params.get("device", "cuda"), DEVICES),
                 precision=first.precision, nproc=first.nproc, seeds=len(effective_seeds(params)),
                 sources=sources, configs=configs, revisions=revisions, published=published, compare=compare)


def _hub_keys(plan: Plan) -> list[str]:
    """The size keys of the hub checkpoints evaluated as they are (published and compared)."""
    return [f"published.{n}" for n in plan.published] + [f"compare.{n}" for n in plan.compare]


def _time_checks(plan: Plan, models: dict, sizes: dict, root: Path) -> list[Check]:
    """Wall time per train stage and for all evaluation, from the closest bench measurement."""
    target = max((s.nonembedding for s in sizes.values()), default=0)
    measured = estimate.pick_throughput(estimate.read_bench(root / "reports" / "bench"), plan.device, target or 1)
    if measured is None or not target:
        return [Check("time", "info", "not estimated: no training throughput in reports/bench/ (run bench/) "
                                      "or no model size")]
    gpu_note = ""
    if plan.device == "cuda" and measured.device != "cuda":
        gpu_note = f"; no GPU throughput measured yet in reports/bench/, so these are {measured.device} times"
    checks = [Check("time", "info", f"from reports/bench/{Path(measured.file).name}: "
                                    f"training {measured.train:,.0f} sentences/s"
                                    + (f", encoding {measured.encode:,.0f}" if measured.encode else "")
                                    + f" for {measured.nonembedding / 1e6:.2f}M non-embedding parameters on "
                                    f"{measured.hardware}; scaled by each model's non-embedding parameters{gpu_note}")]
    processes = plan.nproc if plan.device == "cuda" else 1
    for name, cfg in plan.configs.items():
        size = sizes.get(models[name])
        if size is None:
            continue
        examples, origin = _train_examples(root, cfg.data)
        seconds = estimate.train_seconds(
            examples=examples, kind=cfg.data, epochs=cfg.epochs, seeds=plan.seeds, batch_size=cfg.batch_size,
            eval_steps=cfg.eval_steps, nonembedding=size.nonembedding, measured=measured, processes=processes)
        rate = estimate.scaled(measured.train, measured, size.nonembedding) * processes
        rate_text = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
        checks.append(Check(f"time train@{name}", "info",
                            f"~{estimate.human_seconds(seconds)} ({examples:,} {cfg.data} examples ({origin}) x "
                            f"{cfg.epochs} epoch(s) x {plan.seeds} seed(s) at ~{rate_text} sentences/s, "
                            f"plus KorSTS dev every {cfg.eval_steps} steps)"))
    scored = [sizes[models[n]] for n in plan.configs if models[n] in sizes] * plan.seeds
    scored += [sizes[m] for m in dict.fromkeys(models.values()) if m in sizes]  # baseline
    scored += [sizes[k] for k in _hub_keys(plan) if k in sizes]
    per_model = [estimate.eval_seconds(s.nonembedding, measured) for s in scored]
    if per_model and None not in per_model:
        checks.append(Check("time evaluate+baseline+published+compare", "info",
                            f"~{estimate.human_seconds(sum(per_model))} ({len(per_model)} models x "
                            f"{4 * estimate.TEST_PAIRS:,} sentences, both benchmarks under both protocols)"))
    return checks


def _disk_check(plan: Plan, models: dict, sizes: dict, source_sizes: dict, root: Path,
                disk_usage: Callable) -> Check:
    """Free disk at ``root`` against :func:`pipeline.estimate.disk_needed` for this plan."""
    base = {m: sizes[m] for m in dict.fromkeys(models.values()) if m in sizes}
    if len(base) < len(set(models.values())):
        return Check("disk", "info", "not estimated: a base model could not be checked")
    examples = {name: (cfg.data, _train_examples(root, cfg.data)[0]) for name, cfg in plan.configs.items()}
    parts = estimate.disk_needed(
        base=base, hub_models=[m for m in base if not (root / m).is_dir()], variant_models=models,
        variant_examples=examples, seeds=plan.seeds, sources=source_sizes,
        published=[sizes[k] for k in _hub_keys(plan) if k in sizes])
    needed, free = sum(parts.values()), disk_usage(root).free
    unknown = [k for k, v in source_sizes.items() if v is None]
    detail = (f"~{estimate.human_bytes(needed)} needed ("
              + ", ".join(f"{k} {estimate.human_bytes(v)}" for k, v in parts.items())
              + "; DVC cache copies included" + (f"; sizes unknown: {', '.join(unknown)}" if unknown else "")
              + f"), {estimate.human_bytes(free)} free")
    return Check("disk", "ok" if free >= needed else "fail",
                 detail if free >= needed else f"{detail}: free at least {estimate.human_bytes(needed - free)} more")


def run_preflight(params: Params, **kwargs) -> list[Check]:
    """Every check of :func:`iter_preflight`, as a list."""
    return list(iter_preflight(params, **kwargs))


def iter_preflight(params: Params, *, root: Path | str = ".", probe: Callable[[], DeviceInfo] = probe_device,
                   disk_usage: Callable = shutil.disk_usage) -> Iterator[Check]:
    """Every check, as it completes: params, device, nproc, sources, base models, published checkpoints,
    disk, time.

    Args:
        params: the project's params.yaml.
        root: the project folder (data/raw, reports/bench and relative paths live there).
        probe: returns the :class:`DeviceInfo` (tests pass a simulated one).
        disk_usage: ``shutil.disk_usage``-like (tests pass a full or an empty disk).
    """
    root = Path(root)
    try:
        plan = read_plan(params)
    except UserError as exc:
        yield Check("params", "fail", str(exc))
        return
    yield Check("params", "ok", f"{len(plan.configs)} variants, device {plan.device}, "
                                f"precision {plan.precision}, nproc {plan.nproc}, {plan.seeds} seed(s)")
    info = probe()
    yield check_device(info, device=plan.device, precision=plan.precision)
    yield check_nproc(info, device=plan.device, nproc=plan.nproc)
    source_sizes = {}
    for key, entry in plan.sources.items():
        check, source_sizes[key] = check_source(key, entry, root=root)
        yield check
    models = {name: cfg.model for name, cfg in plan.configs.items()}
    sizes: dict[str, estimate.ModelSize] = {}
    for model in dict.fromkeys(models.values()):
        check, size = check_model(f"model {model}", model, plan.revisions.get(model), root=root)
        yield check
        if size is not None:
            sizes[model] = size
    checks = {f"published.{n}": lambda n=n, e=e: check_model(f"published.checkpoints.{n}", e["id"],
                                                             e.get("revision") or None, root=root)
              for n, e in plan.published.items()}
    checks.update({f"compare.{n}": lambda e=e: check_compared(e, root=root) for n, e in plan.compare.items()})
    for key, check_one in checks.items():
        check, size = check_one()
        yield check
        if size is not None:
            sizes[key] = size
    yield _disk_check(plan, models, sizes, source_sizes, root, disk_usage)
    yield from _time_checks(plan, models, sizes, root)
