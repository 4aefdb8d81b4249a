"""A Hugging Face model card (README.md with YAML metadata) for a trained variant, and pushing it."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pipeline.card import CARD, COLUMN_TITLES, card_row, row_label
from pipeline.evaluate import BENCHMARKS
from pipeline.metrics import KEYS
from pipeline.mteb import TASKS, data_used, has_scores, model_index_entry
from pipeline.provenance import is_local_record, model_label, shown_config


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def package_name(variant: str) -> str:
    """The packaged model's name (model card title, MTEB results folder)."""
    return f"simcse-ko-{variant}-repro"


def model_index(name: str, metrics: dict, data: dict) -> list[dict]:
    """The ``model-index`` metadata, as ``mteb create_meta`` writes it, every score x100: MTEB's task and
    dataset names where the scores are on MTEB's rows, else the file they were computed on (pipeline.mteb).

    Args:
        data: {benchmark: :func:`pipeline.mteb.data_used`}.
    """
    results = [model_index_entry(metrics, bench, data[bench]) for bench in TASKS if has_scores(metrics, bench)]
    return [{"name": name, "results": results}]


# Each training source's licence, as its upstream states it (docs/licences.md has the sources). A trained
# model is an adaptation of its training data, so the data's terms decide the model's tag; every variant is also
# selected on KorSTS dev (CC BY-SA 4.0) and starts from a base model whose own terms apply beside these.
_SHARE_ALIKE = ("CC BY-SA 4.0 (share-alike) because it is an adaptation of {data}, released under CC BY-SA 4.0, "
                "and was selected on KorSTS dev (KorNLUDatasets, CC BY-SA 4.0).")
_XNLI_NOTE = ("No single licence is declared: the training data comes from KorNLUDatasets (CC BY-SA 4.0), whose "
              "XNLI-ko files are human translations of XNLI, itself CC BY-NC 4.0 (non-commercial). The two terms "
              "do not combine into one licence; use this model only non-commercially and share adaptations alike.")
LICENCES = {
    "wiki": {"meta": {"license": "cc-by-sa-4.0"},
             "text": _SHARE_ALIKE.format(data="Korean Wikipedia text (the SimCSE-KO 1M-sentence release; "
                                              "Wikipedia text is CC BY-SA, 3.0 or 4.0 by dump date, which allows "
                                              "adaptations under 4.0, and GFDL)")},
    "kornli_train": {"meta": {"license": "cc-by-sa-4.0"},
                     "text": _SHARE_ALIKE.format(data="KorNLI train (KorNLUDatasets)") + (
                         " KorNLI train is a machine translation of SNLI (CC BY-SA 4.0) and MultiNLI, whose "
                         "texts come under their own terms (OANC; fiction by several licences): check MultiNLI's "
                         "terms before a commercial use.")},
    "korsts_xnli": {"meta": {"license": "other", "license_name": "cc-by-sa-4.0-and-cc-by-nc-4.0-sources",
                             "license_link": "https://github.com/facebookresearch/XNLI/blob/main/LICENSE"},
                    "text": "Trained on the sentences of KorSTS train and XNLI-ko dev. " + _XNLI_NOTE},
    "xnli_test": {"meta": {"license": "other", "license_name": "cc-by-sa-4.0-and-cc-by-nc-4.0-sources",
                           "license_link": "https://github.com/facebookresearch/XNLI/blob/main/LICENSE"},
                  "text": "Trained on triplets from XNLI-ko test. " + _XNLI_NOTE},
}


def model_licence(source: str) -> dict:
    """The packaged model's licence, which follows from its training data.

    Args:
        source: where the training data came from (``corpus.from`` or ``triplets.from``: wiki, kornli_train,
            korsts_xnli, xnli_test).
    Returns:
        ``{"meta": <license keys of the card's YAML metadata>, "text": <the card's Licence section>}``.
    """
    return LICENCES[source]


def usage_lines(name: str, cfg: dict) -> list[str]:
    """The packaged model card's "Usage" section: the evaluated embedding, with sentence-transformers and with
    transformers only (``cfg``: the shown training config, for its pooler and max length)."""
    pooling = {"cls": "[CLS] (first token) of the last hidden state", "mean": "mean of the last hidden states",
               "max": "max over the last hidden states"}[cfg["pooler"]]
    lines = [
        "## Usage", "",
        f"The embedding is the {pooling} — the vector that was evaluated. It is *not* BERT's "
        "`pooler_output`, which the original card's example shows but its evaluation never used.", "",
        "```python", "from sentence_transformers import SentenceTransformer", "",
        f'model = SentenceTransformer("{name}")  # or the local folder',
        'embeddings = model.encode(["한국어 문장 임베딩을 만듭니다.", "문장의 의미가 비슷하면 벡터도 가깝습니다."])',
        "print(model.similarity(embeddings[0:1], embeddings[1:2]))", "```", "",
        "With transformers only:", "",
        "```python", "import torch", "from transformers import AutoModel, AutoTokenizer", "",
        f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
        f'model = AutoModel.from_pretrained("{name}").eval()',
        f'batch = tokenizer(["한국어 문장"], padding=True, truncation=True, max_length={cfg["max_len"]}, '
        'return_tensors="pt")',
        "with torch.inference_mode():",
        "    hidden = model(input_ids=batch[\"input_ids\"], attention_mask=batch[\"attention_mask\"]).last_hidden_state",
    ]
    if cfg["pooler"] == "cls":
        lines.append("embedding = hidden[:, 0]  # [CLS], as evaluated (not pooler_output)")
    else:
        lines.append("mask = batch[\"attention_mask\"].unsqueeze(-1)")
        lines.append("embedding = (hidden * mask).sum(1) / mask.sum(1)" if cfg["pooler"] == "mean"
                     else "embedding = hidden.masked_fill(mask == 0, -1e4).max(1).values")
    return lines


def render_model_card(training: dict, metrics: dict, data: dict | None = None) -> str:
    """README.md for ``dist/<variant>``: metadata, results vs the card, usage, training params.

    Args:
        training: the seed folder's training.json.
        metrics: the variant's metrics JSON (evaluate stage).
        data: {benchmark: :func:`pipeline.mteb.data_used`}, the rows of the ``model-index`` scores
            (None: our files, provenance not recorded).
    """
    variant = training["variant"]
    cfg = shown_config(training)
    base = training["base_model"]
    base_name = model_label(base)
    name = package_name(variant)
    datasets = ["klue", "kor_nlu"] + (["kor_nli"] if cfg["data"] == "nli" else [])
    source = (training.get("data") or {}).get("from") or ("wiki" if cfg["data"] == "wiki" else "kornli_train")
    licence = model_licence(source)
    meta = {
        "language": ["ko"],
        **licence["meta"],
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "sentence-similarity", "simcse"],
    }
    if not is_local_record(base):  # the hub's base_model takes a hub id; a local folder's path means nothing there
        meta["base_model"] = base["model"]
    meta["datasets"] = datasets
    data = data or {bench: data_used(metrics, bench, {}, {}) for bench in TASKS}
    meta["model-index"] = model_index(name, metrics, data)

    corpus = "the distinct sentences of KorSTS train and XNLI-ko dev" if source == "korsts_xnli" else \
        "a Korean Wikipedia corpus"
    nli = "XNLI-ko test" if source == "xnli_test" else "KorNLI"
    objective = (f"unsupervised SimCSE on {corpus} (each sentence is its own positive; "
                 "dropout makes the two views)" if cfg["data"] == "wiki" else
                 f"supervised SimCSE on {nli} triplets (entailment positives, contradiction hard negatives)")
    row = card_row(variant)
    purpose = (f"It reproduces the row **{row_label(variant)}** of the SimCSE-KO model card with the "
               if row else f"It is the variant `{variant}` (not a row of the SimCSE-KO model card) of the ")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {name}", "",
             f"A Korean sentence encoder trained with {objective}, starting from `{base_name}`"
             + (f" (commit `{base['commit']}`)" if base.get("commit") else "") + ".",
             purpose + "simcse-ko-repro DVC pipeline; every number below comes from that pipeline's evaluate "
             "stage.", "",
             f"Selected at training step {training['selected_step']} of {training['total_steps']} by "
             f"{training['selection_metric']} = {training['best_dev'].get(training['selection_metric'].split('.')[-1], float('nan')):.2f}.",
             "", "## Results (x100; AVG = mean of the eight columns)", "",
             "Under the card's evaluation protocol, on the card's files. The `model-index` metadata above "
             "carries MTEB's KorSTS and KLUE-STS scores instead (no dot product, KorSTS sentences as published, "
             "KLUE-STS `labels.label`), each naming the rows it was computed on: MTEB's own dataset where the "
             "pipeline could read it from the hub, otherwise our file (KorSTS: 1,379 pairs, three more than "
             "MTEB's 1,376).", ""]
    for bench, (_, title) in BENCHMARKS.items():
        if bench not in metrics:
            continue
        lines += [f"**{title}**", "", "| Model | " + " | ".join(COLUMN_TITLES) + " |",
                  "|" + "---|" * (len(KEYS) + 1)]
        lines.append("| this model | " + " | ".join(_fmt(metrics[bench][k]) for k in KEYS) + " |")
        published = CARD.get(bench, {}).get(card_row(variant) or "")
        if published:
            lines.append(f"| card: {row_label(card_row(variant))} | " + " | ".join(_fmt(published[k]) for k in KEYS)
                         + " |")
        lines.append("")
    lines += usage_lines(name, cfg)
    lines += ["```", "", "## Training", "", "| param | value |", "|---|---|"]
    for key in sorted(cfg):
        lines.append(f"| {key} | {cfg[key]} |")
    lines += ["", "## Licence", "", licence["text"], ""]
    lines += ["## Citation", "",
              "Gao, Yao and Chen (2021), SimCSE, EMNLP. Ham et al. (2020), KorNLI and KorSTS, arXiv:2004.03289. "
              "Park et al. (2021), KLUE, arXiv:2105.09680.", ""]
    return "\n".join(lines)


def push_to_hub(folder: Path | str, repo_id: str, *, private: bool = False) -> str:
    """Upload a packaged folder to the hub. The token comes only from the environment (HF_TOKEN).

    Returns:
        the URL of the commit.
    """
    from huggingface_hub import HfApi

    from pipeline.errors import UserError

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise UserError("HF_TOKEN is not set; export a write token in the environment (never in a file of the repo)")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload from simcse-ko-repro")
    return str(getattr(info, "commit_url", info))
