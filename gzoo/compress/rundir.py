"""A run directory: the resolved recipe, one folder per stage with its ``done.json``, the JSON-lines log, and
memos of scores, so that a killed run resumes without repeating a finished stage or a scored candidate.

    RUN/recipe.yaml        the recipe as resolved (overrides applied); a resume must resolve to the same
    RUN/log.jsonl          one line per logged training step, every stage
    RUN/<stage>/done.json  the stage's result, written last: its presence means the stage is finished
    RUN/<stage>/...        the stage's checkpoint and files
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gzoo.compress.engine import Processes, barrier
from gzoo.errors import GzooError
from gzoo.paths import atomic_write_text

RESOLVED_RECIPE = "recipe.yaml"
LOG = "log.jsonl"
DONE = "done.json"


class RunDirectory:
    def __init__(self, path: Path, processes: Processes) -> None:
        self.path, self.processes = Path(path), processes

    @property
    def log_file(self) -> Path:
        return self.path / LOG

    def prepare(self, resolved: dict[str, Any], resume: bool) -> None:
        """A new run needs an empty directory; a resumed one the same resolved recipe."""
        text = yaml.safe_dump(resolved, sort_keys=False)
        stored = self.path / RESOLVED_RECIPE
        holds_files = self.path.is_dir() and any(self.path.iterdir())
        if resume:
            if not stored.is_file() and holds_files:
                raise GzooError(f"{self.path} holds files but no gzoo run (no {RESOLVED_RECIPE}); give -o the "
                                "directory of a gzoo compress run, or leave out --resume and give -o a new one")
            if not stored.is_file():
                raise GzooError(f"{self.path} holds no run to resume; leave out --resume to start one there")
            if stored.read_text() != text:
                raise GzooError(f"{self.path} was started with other settings (see its {RESOLVED_RECIPE}); resume "
                                "with the same recipe and --set values, or start a new run with -o")
            return
        if self.processes.is_main:
            if holds_files and not stored.is_file():
                raise GzooError(f"{self.path} holds files but no gzoo run; give -o a new or empty directory")
            if holds_files:
                raise GzooError(f"{self.path} already holds a run; pass --resume to continue it or -o for a new "
                                "directory")
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(stored, text)
        barrier(self.processes)

    def stage_dir(self, stage: str) -> Path:
        return self.path / stage

    def finished(self, stage: str) -> dict | None:
        """The stage's result if it finished, else None."""
        path = self.stage_dir(stage) / DONE
        return json.loads(path.read_text()) if path.is_file() else None

    def finish(self, stage: str, result: dict) -> dict:
        if self.processes.is_main:
            self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.stage_dir(stage) / DONE, json.dumps(result, indent=2) + "\n")
        barrier(self.processes)
        return result

    def memo(self, stage: str, name: str, score: Callable[[tuple], float]) -> Callable[[tuple], float]:
        """``score`` remembered in ``<stage>/<name>.jsonl``: a resumed stage scores no candidate (a tuple, such
        as a search config) twice."""
        path = self.stage_dir(stage) / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        known: dict[tuple, float] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                known[tuple(row["config"])] = row["score"]

        def remembered(candidate: tuple) -> float:
            if candidate not in known:
                known[candidate] = score(candidate)
                if self.processes.is_main:
                    with open(path, "a") as file:
                        file.write(json.dumps({"config": list(candidate), "score": known[candidate]}) + "\n")
            return known[candidate]

        return remembered
