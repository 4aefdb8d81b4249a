"""Reading and validating params.yaml, before any expensive work starts.

Stages read params through :class:`Params`, which records every dotted key it
hands out; a test compares that record with the params each stage declares in
dvc.yaml, so "declare exactly the params you read" is checked, not hoped for.

Variants (the card's four rows) live under ``variants.<name>``; a variant may
override a top-level setting (``model: klue/roberta-base``), everything else is
shared, so ``dvc exp run -S temp=0.1`` changes all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pipeline import yamlio
from pipeline.errors import UserError

#: Settings a variant may override; all other params are shared by every variant.
VARIANT_OVERRIDABLE = (
    "model", "epochs", "max_len", "batch_size", "lr", "dropout", "temp", "pooler",
    "recipe", "eval_steps", "weight_decay", "hard_negative_weight", "max_grad_norm", "warmup_steps",
)
VARIANT_KEYS = VARIANT_OVERRIDABLE + ("data",)
POOLERS = ("cls", "mean", "max")
RECIPES = ("card", "simcse")
DATA_KINDS = ("wiki", "nli")
PRECISIONS = ("bf16", "fp16", "fp32")
PROTOCOLS = ("card", "clean")
DEVICES = ("cuda", "cpu")

_MISSING = object()


class Params:
    """A read-only view of params.yaml that records which dotted keys were read."""

    def __init__(self, data: dict[str, Any], source: str = "params.yaml"):
        self._data = data
        self.source = source
        self.accessed: set[str] = set()

    @classmethod
    def load(cls, path: Path | str = "params.yaml") -> "Params":
        """Load a params file; a missing or malformed file is a :class:`UserError`."""
        return cls(load_mapping(path), source=str(path))

    def _lookup(self, dotted: str, default: Any = _MISSING) -> Any:
        node: Any = self._data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not _MISSING:
                    return default
                raise UserError(f"{self.source}: missing param '{dotted}'")
            node = node[part]
        return node

    def get(self, dotted: str, default: Any = _MISSING) -> Any:
        """Return the value at ``dotted`` (e.g. ``"bootstrap.resamples"``) and record the read."""
        self.accessed.add(dotted)
        return self._lookup(dotted, default)

    def variant_names(self) -> list[str]:
        """Names of the configured variants (reads the mapping's keys only)."""
        variants = self._lookup("variants", {})
        if not isinstance(variants, dict) or not variants:
            raise UserError(f"{self.source}: 'variants' must be a non-empty mapping of name -> overrides")
        return list(variants)

    def variant(self, name: str) -> dict[str, Any]:
        """The override mapping of one variant; an unknown name lists the known ones."""
        names = self.variant_names()
        if name not in names:
            raise UserError(f"{self.source}: unknown variant '{name}'; expected one of: {', '.join(names)}")
        overrides = self.get(f"variants.{name}") or {}
        if not isinstance(overrides, dict):
            raise UserError(f"{self.source}: variants.{name} must be a mapping of overrides")
        unknown = sorted(set(overrides) - set(VARIANT_KEYS))
        if unknown:
            raise UserError(
                f"{self.source}: variants.{name}.{unknown[0]} is not a setting a variant can override; "
                f"expected one of: {', '.join(VARIANT_KEYS)}"
            )
        return overrides

    def resolved(self, name: str, key: str) -> Any:
        """A setting for variant ``name``: its override if it has one, else the top-level value.

        The top-level key is always read (and so must be declared), because it is
        what applies as soon as the override is removed.
        """
        overrides = self.variant(name)
        # `data` has no top-level default: every variant names its training data.
        top = None if key == "data" else self.get(key)
        value = overrides.get(key, top)
        if value is None:
            raise UserError(f"{self.source}: variants.{name}.{key} is required")
        return value


def load_mapping(path: Path | str, *, allow_empty: bool = False) -> dict[str, Any]:
    """The mapping a params file holds (an empty file is {} if ``allow_empty``, e.g. an overlay).

    Read as DVC reads it (:func:`pipeline.yamlio.load`: YAML 1.2, ``6e-05`` is a float, ``yes`` a string).

    Raises:
        UserError: the file is missing, not UTF-8, not YAML (a duplicate key included), or not a mapping.
    """
    path = Path(path)
    try:
        data = yamlio.load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found; run from the project root") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None
    except yamlio.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of params at the top level")
    return data


# --- validation -------------------------------------------------------------------

def _fail(source: str, key: str, value: Any, expected: str) -> UserError:
    return UserError(f"{source}: {key} = {value!r}: expected {expected}")


def _number(source: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(source, key, value, "a finite number")
    return float(value)


def _integer(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(source, key, value, "an integer")
    return value


def check_choice(source: str, key: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a one-line :class:`UserError`."""
    choices = tuple(choices)
    if value not in choices:
        raise _fail(source, key, value, "one of " + ", ".join(choices))
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything the train stage needs for one variant, validated."""

    variant: str
    model: str
    data: str
    epochs: int
    max_len: int
    batch_size: int
    lr: float
    dropout: float
    temp: float
    pooler: str
    recipe: str
    eval_steps: int
    weight_decay: float
    hard_negative_weight: float
    max_grad_norm: float
    warmup_steps: int
    seeds: tuple[int, ...]
    precision: str
    nproc: int
    nnodes: int
    node_rank: int
    master_addr: str | None
    master_port: int
    checkpoint_steps: int
    log_steps: int
    eval_batch_size: int
    compile: bool
    deterministic: bool
    device: str


def device_setting(params: Params) -> str:
    """The ``device`` param: ``cuda`` (the card's run) or ``cpu`` (an explicit opt-in, never a fallback)."""
    return check_choice(params.source, "device", params.get("device"), DEVICES)


def effective_seeds(params: Params) -> tuple[int, ...]:
    """``seeds`` when non-empty (one training run per seed), else the single ``seed``."""
    src = params.source
    seed = _integer(src, "seed", params.get("seed"))
    seeds = params.get("seeds")
    if seeds in (None, []):
        return (seed,)
    if not isinstance(seeds, list):
        raise _fail(src, "seeds", seeds, "a list of integers (or [] to train once with `seed`)")
    out = tuple(_integer(src, f"seeds[{i}]", s) for i, s in enumerate(seeds))
    if len(set(out)) != len(out):
        raise _fail(src, "seeds", seeds, "distinct seeds")
    return out


def train_config(params: Params, variant: str) -> TrainConfig:
    """Resolve and validate the training settings of ``variant`` (see :class:`TrainConfig`)."""
    src = params.source
    r = lambda key: params.resolved(variant, key)  # noqa: E731
    key = lambda k: f"{k} (variant {variant})"  # noqa: E731

    model = r("model")
    if not isinstance(model, str) or not model.strip():
        raise _fail(src, key("model"), model, "a hub id (org/name) or a local folder")
    data = check_choice(src, key("data"), r("data"), DATA_KINDS)
    epochs = _integer(src, key("epochs"), r("epochs"))
    if epochs < 1:
        raise _fail(src, key("epochs"), epochs, "an integer >= 1")
    max_len = check_max_len(src, key("max_len"), r("max_len"))
    batch_size = _integer(src, key("batch_size"), r("batch_size"))
    if batch_size < 2:
        raise _fail(src, key("batch_size"), batch_size, "an integer >= 2 (in-batch negatives need 2 sentences)")
    lr = _number(src, key("lr"), r("lr"))
    if lr <= 0:
        raise _fail(src, key("lr"), lr, "a number > 0")
    dropout = _number(src, key("dropout"), r("dropout"))
    if not 0 <= dropout < 1:
        raise _fail(src, key("dropout"), dropout, "a number in [0, 1)")
    temp = _number(src, key("temp"), r("temp"))
    if temp <= 0:
        raise _fail(src, key("temp"), temp, "a number > 0")
    pooler = check_choice(src, key("pooler"), r("pooler"), POOLERS)
    recipe = check_choice(src, key("recipe"), r("recipe"), RECIPES)
    eval_steps = _integer(src, key("eval_steps"), r("eval_steps"))
    if eval_steps < 1:
        raise _fail(src, key("eval_steps"), eval_steps, "an integer >= 1")
    weight_decay = _number(src, key("weight_decay"), r("weight_decay"))
    if weight_decay < 0:
        raise _fail(src, key("weight_decay"), weight_decay, "a number >= 0")
    hnw = _number(src, key("hard_negative_weight"), r("hard_negative_weight"))
    max_grad_norm = _number(src, key("max_grad_norm"), r("max_grad_norm"))
    if max_grad_norm < 0:
        raise _fail(src, key("max_grad_norm"), max_grad_norm, "a number >= 0 (0 = no gradient clipping)")
    warmup_steps = _integer(src, key("warmup_steps"), r("warmup_steps"))
    if warmup_steps < 0:
        raise _fail(src, key("warmup_steps"), warmup_steps, "an integer >= 0")
    if warmup_steps and recipe != "simcse":
        # the card's cosine schedule has no warmup phase to lengthen
        raise _fail(src, key("warmup_steps"), warmup_steps, "0 with recipe card (warmup belongs to recipe simcse)")
    precision = check_choice(src, "precision", params.get("precision"), PRECISIONS)
    nproc = _integer(src, "nproc", params.get("nproc"))
    if nproc < 1:
        raise _fail(src, "nproc", nproc, "an integer >= 1")
    launch = launch_config(params)
    world = nproc * launch["nnodes"]
    if batch_size % world:
        raise _fail(src, key("batch_size"), batch_size,
                    f"a multiple of nnodes x nproc = {world} (it is the global batch)")
    checkpoint_steps = _integer(src, "checkpoint_steps", params.get("checkpoint_steps"))
    if checkpoint_steps < 1:
        raise _fail(src, "checkpoint_steps", checkpoint_steps, "an integer >= 1")
    log_steps = check_positive_int(src, "log_steps", params.get("log_steps"))
    eval_batch_size = check_positive_int(src, "eval_batch_size", params.get("eval_batch_size"))
    compile_ = check_bool(src, "compile", params.get("compile"))
    deterministic = check_bool(src, "deterministic", params.get("deterministic"))
    return TrainConfig(
        variant=variant, model=model, data=data, epochs=epochs, max_len=max_len,
        batch_size=batch_size, lr=lr, dropout=dropout, temp=temp, pooler=pooler,
        recipe=recipe, eval_steps=eval_steps, weight_decay=weight_decay,
        hard_negative_weight=hnw, max_grad_norm=max_grad_norm, warmup_steps=warmup_steps,
        seeds=effective_seeds(params), precision=precision,
        nproc=nproc, **launch, checkpoint_steps=checkpoint_steps, log_steps=log_steps,
        eval_batch_size=eval_batch_size, compile=compile_, deterministic=deterministic,
        device=device_setting(params),
    )


def launch_config(params: Params) -> dict[str, Any]:
    """``nnodes``, ``node_rank``, ``master_addr``, ``master_port``: where this node sits in a multi-node run.

    Every node runs the train stage with the same params except ``node_rank``; torchrun's
    rendezvous meets at ``master_addr:master_port`` (node 0). One node needs none of them.
    """
    src = params.source
    nnodes = check_positive_int(src, "nnodes", params.get("nnodes"))
    node_rank = _integer(src, "node_rank", params.get("node_rank"))
    if not 0 <= node_rank < nnodes:
        raise _fail(src, "node_rank", node_rank, f"an integer in [0, {nnodes - 1}] (nnodes = {nnodes})")
    addr = params.get("master_addr")
    if addr is not None and (not isinstance(addr, str) or not addr or any(c.isspace() for c in addr)):
        raise _fail(src, "master_addr", addr, "a host name or IP address of node 0, or null")
    if nnodes > 1 and addr is None:
        raise _fail(src, "master_addr", addr, f"the host name or IP address of node 0 when nnodes = {nnodes} > 1")
    port = _integer(src, "master_port", params.get("master_port"))
    if not 1 <= port <= 65535:
        raise _fail(src, "master_port", port, "an integer in [1, 65535]")
    return {"nnodes": nnodes, "node_rank": node_rank, "master_addr": addr, "master_port": port}


def check_bool(source: str, key: str, value: Any) -> bool:
    """Return ``value`` if it is true or false."""
    if not isinstance(value, bool):
        raise _fail(source, key, value, "true or false")
    return value


def check_positive_int(source: str, key: str, value: Any) -> int:
    """Return ``value`` if it is an integer >= 1."""
    value = _integer(source, key, value)
    if value < 1:
        raise _fail(source, key, value, "an integer >= 1")
    return value


def check_max_len(source: str, key: str, value: Any, model_limit: int | None = None) -> int:
    """``max_len`` must be >= 8 tokens and, once the model is known, within its position limit."""
    value = _integer(source, key, value)
    if value < 8:
        raise _fail(source, key, value, "an integer >= 8")
    if model_limit is not None and value > model_limit:
        raise _fail(source, key, value, f"an integer in [8, {model_limit}] (the model's position limit)")
    return value


@dataclass(frozen=True)
class BootstrapConfig:
    """Paired bootstrap settings for the metric intervals."""

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0


def eval_settings(params: Params) -> tuple[str, int, BootstrapConfig]:
    """(protocol, eval_batch_size, bootstrap config): what every evaluating stage reads."""
    src = params.source
    protocol = check_choice(src, "protocol", params.get("protocol"), PROTOCOLS)
    batch = check_positive_int(src, "eval_batch_size", params.get("eval_batch_size"))
    resamples = _integer(src, "bootstrap.resamples", params.get("bootstrap.resamples"))
    if resamples < 100:
        raise _fail(src, "bootstrap.resamples", resamples, "an integer >= 100 (1000 or more for a 95% interval)")
    confidence = _number(src, "bootstrap.confidence", params.get("bootstrap.confidence"))
    if not 0 < confidence < 1:
        raise _fail(src, "bootstrap.confidence", confidence, "a number in (0, 1)")
    seed = _integer(src, "bootstrap.seed", params.get("bootstrap.seed"))
    return protocol, batch, BootstrapConfig(resamples=resamples, confidence=confidence, seed=seed)


def check_sections(source: str, key: str, value: Any) -> dict[str, str]:
    """Extra report sections: a mapping of non-empty title -> markdown text ({} for none)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(t, str) and t.strip() and isinstance(x, str)
                                              for t, x in value.items()):
        raise _fail(source, key, value, "a mapping of section title -> markdown text, or {}")
    return value
