"""The results store: every field comes back, the newest wins, concurrent writers lose nothing, bad files are named."""

import math
import multiprocessing
import sqlite3
import threading
from multiprocessing.synchronize import Barrier

import pytest

from gzoo import results
from gzoo.errors import GzooError
from gzoo.results import Result

FID_PROTOCOL = {"name": "FID, torch-fidelity Inception-v3 (TF 2015-12-05); reference: 120 test zebra images",
                "fid": "torch-fidelity inception-v3-compat 2048, resize 299 bilinear", "reference": "/data/testB",
                "images": 120, "stats_sha256": "ab" * 32}


def fid(model_id: str = "gan-compression/horse2zebra", value: float = 71.3, **fields) -> Result:
    return Result(model_id, "fid", value, FID_PROTOCOL, "cpu: Test CPU", **fields)


def test_every_field_round_trips(gzoo_home):
    full = Result("gan-compression/horse2zebra", "fid", 71.25, FID_PROTOCOL, "NVIDIA H100 80GB HBM3",
                  weights_sha256="cd" * 32, dataset="/data/horse2zebra/testA", dataset_sha256="ef" * 32,
                  gzoo_version="9.9.9", torch_version="2.5.0+cu121", date="2024-05-01T14:30:00.5+02:00")
    bare = Result("my-student", "psnr", 31.5, {"name": "PSNR to the teacher's outputs"}, "cpu: Test CPU")
    results.record([full, bare])

    assert (gzoo_home / "results.sqlite").is_file()
    assert results.history() == [full, bare]
    stored = results.history()[0]
    assert stored.protocol == FID_PROTOCOL and stored.protocol is not FID_PROTOCOL
    assert stored.date == "2024-05-01T12:30:00.500000+00:00"  # normalised to UTC
    assert (stored.value, stored.weights_sha256, stored.device) == (71.25, "cd" * 32, "NVIDIA H100 80GB HBM3")
    assert bare.weights_sha256 is None and bare.dataset is None and bare.torch_version  # read from the metadata
    assert results.history("my-student") == [bare]


def test_infinite_psnr_round_trips_and_is_strict_json_in_as_dict():
    identical = Result("original/horse2zebra", "psnr", math.inf, {"name": "PSNR to itself"}, "cpu: Test CPU")
    results.record([identical])
    stored = results.latest()["original/horse2zebra"]["psnr"]
    assert stored.value == math.inf
    assert stored.as_dict()["value"] == "inf" and fid(value=-math.inf).as_dict()["value"] == "-inf"
    assert fid().as_dict()["value"] == 71.3


def test_nan_is_refused():
    # SQLite would store NaN as NULL; a measurement that came out NaN is a failed run.
    with pytest.raises(GzooError, match="horse2zebra: fid came out as NaN") as caught:
        fid(value=math.nan)
    assert caught.value.exit_code == 1


@pytest.mark.parametrize("protocol, date, problem", [
    ({"fid": "no name"}, "2024-05-01T12:00:00+00:00", "protocol needs a 'name'"),
    ({"name": "x"}, "2024-05-01T12:00:00", "has no time zone"),
    ({"name": "x"}, "yesterday", "is not ISO 8601"),
])
def test_malformed_results_are_refused(protocol, date, problem):
    with pytest.raises(ValueError, match=problem):
        Result("m", "fid", 1.0, protocol, "cpu", date=date)


def test_latest_is_the_newest_per_model_and_metric():
    # The newest by date, not by the order recorded; the same date: the one recorded last.
    results.record([fid(value=40.0, date="2024-05-02T00:00:00Z"), fid(value=50.0, date="2024-05-01T00:00:00Z")])
    results.record([fid(value=45.0, date="2024-05-02T00:00:00Z")])
    results.record([Result("gan-compression/horse2zebra", "kid", 0.01, {"name": "KID"}, "cpu",
                           date="2023-01-01T00:00:00Z"),
                    fid("original/horse2zebra", 60.0, date="2020-01-01T00:00:00Z")])

    newest = results.latest()
    assert set(newest) == {"gan-compression/horse2zebra", "original/horse2zebra"}
    assert {m: r.value for m, r in newest["gan-compression/horse2zebra"].items()} == {"fid": 45.0, "kid": 0.01}
    assert newest["original/horse2zebra"]["fid"].value == 60.0
    assert list(results.latest("original/horse2zebra")) == ["original/horse2zebra"]
    assert results.latest("nobody/measured-this") == {}
    assert len(results.history()) == 5


def test_reading_an_absent_store_finds_nothing_and_creates_nothing(gzoo_home):
    assert results.latest() == {} and results.history() == []
    assert not (gzoo_home / "results.sqlite").exists()


def test_schema_version_and_wal_mode(gzoo_home):
    results.record([fid()])
    with sqlite3.connect(gzoo_home / "results.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (results.SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        db.execute(f"PRAGMA user_version = {results.SCHEMA_VERSION + 1}")
    with pytest.raises(GzooError, match="newer than this gzoo reads"):
        results.latest()


def test_creating_the_store_waits_for_a_writer_that_holds_the_lock(gzoo_home):
    # SQLite refuses the switch to WAL at once, without waiting, while another connection holds the write
    # lock: the race of several processes creating the store together.
    gzoo_home.mkdir(parents=True)
    holder = sqlite3.connect(gzoo_home / "results.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
    release.start()
    try:
        results.record([fid()])
    finally:
        release.join()
        holder.close()
    assert [r.value for r in results.history()] == [fid().value]


def _record_many(home: str, writer: int, start: Barrier) -> None:
    import os

    os.environ["GZOO_HOME"] = home
    start.wait()  # every writer starts at once, against a store that does not exist yet
    for i in range(50):
        results.record([fid(f"writer-{writer}", float(i))])


def test_four_processes_recording_at_once_lose_nothing(gzoo_home):
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(4)
    writers = [spawn.Process(target=_record_many, args=(str(gzoo_home), w, start)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [p.exitcode for p in writers] == [0] * 4
    stored = results.history()
    assert len(stored) == 200
    for w in range(4):
        assert [r.value for r in stored if r.model_id == f"writer-{w}"] == [float(i) for i in range(50)]


def test_a_file_that_is_not_a_store_is_named_with_the_fix(gzoo_home):
    gzoo_home.mkdir(parents=True)
    store = gzoo_home / "results.sqlite"
    store.write_text("figures, not a database\n" * 100)
    for action in (lambda: results.record([fid()]), results.latest):
        with pytest.raises(GzooError) as caught:
            action()
        assert caught.value.exit_code == 1
        assert str(store) in str(caught.value) and "move it away" in str(caught.value)
    assert store.read_text().startswith("figures, not a database")  # left as it was


def test_an_unusable_home_is_named(monkeypatch, tmp_path):
    # A file where the home should be: no directory can be made there, even by root.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GZOO_HOME", str(blocker / "home"))
    with pytest.raises(GzooError, match="set GZOO_HOME to a writable directory") as caught:
        results.record([fid()])
    assert caught.value.exit_code == 2  # a setting to fix, like any bad input
    assert f"{blocker} is a file, not a directory" in str(caught.value)
