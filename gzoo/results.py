"""The results store: every number gzoo measured, with its provenance, in ``$GZOO_HOME/results.sqlite``.

One row per measured number: which model (zoo id or directory, and the sha256 of its weights), on which
data (path and content hash), which metric and value, under which protocol (a JSON object), with which
gzoo and torch, on which device, and when (UTC). Rows are only ever added; ``latest`` reads the newest
per model and metric.

Several processes may record at once (two ``gzoo eval`` runs side by side): the store is in WAL mode,
every write is one short ``BEGIN IMMEDIATE`` transaction and a writer waits up to ``BUSY_TIMEOUT_S``
for the lock, so no row is lost. Only the standard library is used: reading the store stays cheap.
"""

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from gzoo.errors import GzooError
from gzoo.paths import gzoo_home
from gzoo.version import __version__

SCHEMA_VERSION = 1  # kept in PRAGMA user_version
BUSY_TIMEOUT_S = 60.0
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS results (
        id INTEGER PRIMARY KEY,
        model_id TEXT NOT NULL,
        weights_sha256 TEXT,
        dataset TEXT,
        dataset_sha256 TEXT,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        protocol TEXT NOT NULL,
        gzoo_version TEXT NOT NULL,
        torch_version TEXT NOT NULL,
        device TEXT NOT NULL,
        date TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS results_by_model_metric ON results (model_id, metric, date)",
)
_COLUMNS = ("model_id", "weights_sha256", "dataset", "dataset_sha256", "metric", "value", "protocol",
            "gzoo_version", "torch_version", "device", "date")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Result:
    """One measured number and how it was measured.

    ``protocol`` is a JSON-serialisable mapping whose ``name`` is a one-line description in the vocabulary of
    zoo.yaml's reported ``protocol`` strings (see ``follows``); the other keys are free, e.g. for FID
    ``{"name": ..., "fid": "torch-fidelity inception-v3-compat 2048, resize 299 bilinear", "reference": ...,
    "images": 1000, "stats_sha256": ...}``. ``weights_sha256`` is None for an architecture measured with random
    weights. ``date`` is ISO 8601 with a time zone, stored in UTC with microseconds, so dates sort as text.
    """

    model_id: str
    metric: str
    value: float
    protocol: dict[str, Any]
    device: str  # "cpu: <CPU name>" or the GPU's name
    weights_sha256: str | None = None
    dataset: str | None = None
    dataset_sha256: str | None = None
    gzoo_version: str = __version__
    torch_version: str = field(default_factory=lambda: version("torch"))  # metadata: importing torch is slow
    date: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.protocol.get("name"), str):
            raise ValueError(f"{self.model_id} {self.metric}: protocol needs a 'name' string, got {self.protocol!r}")
        json.dumps(self.protocol)  # fails now, not half-way through a transaction
        value = float(self.value)
        # SQLite stores NaN as NULL: refuse it rather than lose it.
        if math.isnan(value):
            raise GzooError(f"{self.model_id}: {self.metric} came out as NaN, which is not stored; check the "
                            "data and the model's outputs", exit_code=1)
        try:
            when = datetime.fromisoformat(self.date.replace("Z", "+00:00"))  # Python 3.10 does not read "Z"
        except ValueError:
            raise ValueError(f"date {self.date!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise ValueError(f"date {self.date!r} has no time zone; give it in UTC")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "date", when.astimezone(timezone.utc).isoformat(timespec="microseconds"))

    def follows(self, reported_protocol: str | None) -> bool:
        """Whether this number was measured under a paper's protocol (zoo.yaml's reported ``protocol``).

        The rule is deliberately simple: the protocol's ``name`` equals the paper's protocol string, ignoring
        case and spacing. A paper without a stated protocol is followed by nothing.
        """
        return reported_protocol is not None and _normalised(self.protocol["name"]) == _normalised(reported_protocol)

    def as_dict(self) -> dict[str, Any]:
        """The fields as strict JSON: an infinite value (PSNR of identical images) becomes "inf" or "-inf"."""
        fields = asdict(self)
        if math.isinf(self.value):
            fields["value"] = "inf" if self.value > 0 else "-inf"
        return fields


def store_path() -> Path:
    """Where the results store lives: ``$GZOO_HOME/results.sqlite``."""
    return gzoo_home() / "results.sqlite"


def record(results: list[Result]) -> None:
    """Add the results to the store, all or none, in one short transaction."""
    rows = [tuple({**asdict(r), "protocol": json.dumps(r.protocol, sort_keys=True)}[c] for c in _COLUMNS)
            for r in results]
    with _connection(create=True) as db:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                       rows)
        db.execute("COMMIT")


def latest(model_id: str | None = None) -> dict[str, dict[str, Result]]:
    """The newest result per model and metric (of one model, if given): ``{model_id: {metric: Result}}``.

    Newest by date; of two with the same date, the one recorded last.
    """
    query = f"""SELECT {', '.join(_COLUMNS)} FROM (
                    SELECT *, ROW_NUMBER() OVER (PARTITION BY model_id, metric ORDER BY date DESC, id DESC) AS age
                    FROM results WHERE ?1 IS NULL OR model_id = ?1)
                WHERE age = 1 ORDER BY model_id, metric"""
    newest: dict[str, dict[str, Result]] = {}
    for result in _read(query, (model_id,)):
        newest.setdefault(result.model_id, {})[result.metric] = result
    return newest


def history(model_id: str | None = None) -> list[Result]:
    """Every result (of one model, if given), in the order recorded."""
    return _read(f"SELECT {', '.join(_COLUMNS)} FROM results WHERE ?1 IS NULL OR model_id = ?1 ORDER BY id",
                 (model_id,))


def _read(query: str, parameters: tuple) -> list[Result]:
    if not store_path().exists():
        return []  # nothing measured yet; reading does not create the store
    with _connection(create=False) as db:
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            return []  # an empty file, or another process is creating the schema right now
        rows = db.execute(query, parameters).fetchall()
    fields = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
    return [Result(**{**f, "protocol": json.loads(f["protocol"])}) for f in fields]


@contextmanager
def _connection(create: bool) -> Iterator[sqlite3.Connection]:
    """An autocommit connection (transactions are explicit), its SQLite errors turned into GzooErrors."""
    path = store_path()
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise GzooError(f"the results store {path} has schema {found}, newer than this gzoo reads "
                                f"({SCHEMA_VERSION}); upgrade gzoo, or move the file away", exit_code=1)
            if create and found < SCHEMA_VERSION:
                _create_schema(db)
            yield db
    except sqlite3.OperationalError as err:  # locked past the timeout, read-only, cannot open
        fix = (f"another process held it for over {BUSY_TIMEOUT_S:g} s; try again" if "locked" in str(err)
               else "set GZOO_HOME to a writable directory")
        raise GzooError(f"cannot use the results store {path}: {err}; {fix}", exit_code=1) from None
    except sqlite3.DatabaseError as err:  # not a database, or a corrupt one
        raise GzooError(f"{path} is not a readable results store ({err}); move it away (e.g. to {path.name}.bad) "
                        "and gzoo starts a new one", exit_code=1) from None


def _create_schema(db: sqlite3.Connection) -> None:
    # WAL lets readers (the leaderboard) run beside a writer; the mode is kept in the file.
    _switch_to_wal(db)
    db.execute("BEGIN IMMEDIATE")  # the write lock first: the schema is created once, whoever comes first
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the store in WAL mode, waiting for other processes as every write does: SQLite answers a switch it
    cannot make at once with "database is locked" without calling its busy handler (seen with 4 processes
    creating the store at once), so the waiting is done here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()
