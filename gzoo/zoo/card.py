"""A model directory's card (README.md): Hub metadata as YAML front matter, then tables a person reads.

The front matter is built with huggingface_hub's own ``ModelCardData`` and ``EvalResult`` and parsed back with its
``ModelCard``, so its ``model-index`` is in the format the Hub reads. Only numbers gzoo measured (the results store)
go into ``model-index``; published numbers (zoo.yaml's ``reported``) are listed in the body, labelled as reported
with their source.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from gzoo.data.modeldir import PACKED_WEIGHTS, WEIGHTS
from gzoo.models import architecture_kind
from gzoo.results import Result
from gzoo.zoo.registry import Zoo


def model_card(config: dict[str, Any], repo_id: str | None = None, measured: Sequence[Result] = (),
               reported: Sequence[dict[str, Any]] = (), zoo: Zoo | None = None, left_out: int = 0) -> str:
    """The card text of a model directory described by ``config`` (its config.json).

    ``measured``: results of these weights, one per metric; ``reported``: zoo.yaml's published numbers (dicts with
    metric, value, source and maybe protocol); ``zoo``: where to look the teacher up for ``base_model`` (without it
    the card names no base model); ``left_out``: how many stored results were of other weights.
    """
    name = config.get("id") or (repo_id.split("/")[-1] if repo_id else config["arch"])
    task_type = "image-classification" if architecture_kind(config["arch"]) == "classifier" else "image-to-image"
    tags = ["gzoo", task_type, *(["gan"] if task_type == "image-to-image" else []),
            *(config[k] for k in ("method", "task") if config.get(k))]
    base_model, teacher_line = _teacher(config.get("teacher"), zoo)
    metadata = ModelCardData(
        library_name="gzoo", pipeline_tag=task_type, tags=tags, base_model=base_model,
        license=config["license"].lower() if config.get("license") else None,
        model_name=name if measured else None,
        eval_results=[_eval_result(r, task_type, config.get("task")) for r in measured] or None)
    body = [f"# {name}", "",
            f"A {config.get('method') or 'gzoo'} model, architecture `{config['arch']}` with arguments "
            f"`{_json(config['arch_args'])}`, in the [gzoo](https://pypi.org/project/gzoo/) model directory format "
            f"(`{PACKED_WEIGHTS if config.get('packing') else WEIGHTS}`, `config.json`, this card).", "",
            *([teacher_line, ""] if teacher_line else []),
            "## Use", "", "```python", "import gzoo",
            *(["from huggingface_hub import snapshot_download", "",
               f'model = gzoo.load(snapshot_download("{repo_id}"))'] if repo_id else ["", 'model = gzoo.load("PATH")']),
            "```", "",
            *_measured_section(measured, left_out), *_reported_section(reported)]
    text = f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(body)
    ModelCard(text)  # huggingface_hub's own parser: raises ValueError if the Hub could not read the metadata
    return text


def _teacher(teacher: str | None, zoo: Zoo | None) -> tuple[str | None, str | None]:
    """The ``base_model`` (a Hub repo id, or None) for a teacher, and the card's sentence about the teacher."""
    if not teacher:
        return None, None
    if zoo is None:
        return None, f"Compressed from the teacher `{teacher}`."
    if teacher in zoo.entries:
        hub = (zoo.entries[teacher].weights or {}).get("hub")
        if hub:
            return hub["repo_id"], (f"Compressed from the teacher `{teacher}` (a gzoo zoo id), whose weights are "
                                    f"`{hub['filename']}` in the Hub repository `{hub['repo_id']}`.")
        return None, (f"Compressed from the teacher `{teacher}` (a gzoo zoo id). Its weights are not on the Hub, "
                      "so this card names no `base_model`.")
    try:
        validate_repo_id(teacher)
    except HFValidationError:
        pass
    else:
        if "/" in teacher and not Path(teacher).exists():
            return teacher, f"Compressed from the teacher [`{teacher}`](https://huggingface.co/{teacher})."
    return None, (f"Compressed from the teacher `{teacher}`, which is neither a zoo id nor a Hub repository, so this "
                  "card names no `base_model`.")


def _eval_result(result: Result, task_type: str, task: str | None) -> EvalResult:
    dataset = Path(result.dataset).name if result.dataset else "unspecified"
    return EvalResult(task_type=task_type, task_name=task, dataset_type=dataset, dataset_name=dataset,
                      dataset_revision=result.dataset_sha256, metric_type=result.metric,
                      metric_value=result.as_dict()["value"], metric_name=result.protocol["name"])


def _measured_section(measured: Sequence[Result], left_out: int) -> list[str]:
    lines = ["## Measured by gzoo", ""]
    if not measured:
        lines += ["Nothing measured yet: `gzoo eval` stores results, and `gzoo push` puts them here and in the "
                  "card's `model-index`.", ""]
    else:
        lines += ["Each number is the newest of its metric in the results store of the machine that pushed this "
                  "card, measured on these weights (`model-index` above holds the same values).", "",
                  "| metric | value | dataset | dataset sha256 | protocol | device | gzoo | torch | date (UTC) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in measured:
            protocol = "; ".join([r.protocol["name"], *(f"{k}: {_json(v)}" for k, v in r.protocol.items()
                                                         if k != "name")])
            lines.append("| " + " | ".join(_cell(c) for c in (
                r.metric, _number(r.as_dict()["value"]), r.dataset or "-", r.dataset_sha256 or "-", protocol,
                r.device, r.gzoo_version, r.torch_version, r.date)) + " |")
        lines.append("")
    if left_out:
        lines += [f"{left_out} stored result(s) for this model id were measured on other weights and are left "
                  "out.", ""]
    return lines


def _reported_section(reported: Sequence[dict[str, Any]]) -> list[str]:
    if not reported:
        return []
    lines = ["## Reported (published, not measured by gzoo)", "",
             "Numbers from the papers and READMEs named in `source`, as listed in gzoo's zoo.yaml. They are not "
             "in `model-index`, which holds measured numbers only.", "",
             "| metric | value | source | protocol |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in (r["metric"], _number(r["value"]), r["source"],
                                                   r.get("protocol") or "-")) + " |" for r in reported]
    return [*lines, ""]


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")  # a pipe would end the table cell


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
