"""`ocds-ingest load` and `migrate`: exit codes, one-line errors, the summary."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ingest.cli import main
from ingest.store.connection import Database
from tests.conftest import samples_dir


@pytest.fixture
def use_database(db: Database, migrated: str, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("DATABASE_URL", migrated)
    return db


def test_load_prints_a_summary_and_exits_0_with_rejections(use_database: Database,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = samples_dir() / "invalid-and-awkward"
    status = main(["load", str(folder / "missing-release-id.json"), str(folder / "same-id-different-ocids.json"),
                   "--source", "cli-test"])
    out = capsys.readouterr().out
    assert status == 0
    assert "files            2" in out
    assert "releases read    4" in out
    assert "  inserted       2" in out
    assert "    missing_id             2" in out
    assert use_database.run("SELECT DISTINCT source FROM releases", "read") == [["cli-test"]]


def test_strict_makes_a_rejection_fail_the_load(use_database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    path = samples_dir() / "invalid-and-awkward" / "missing-release-id.json"
    assert main(["load", "--strict", str(path)]) == 1
    assert "2 releases were rejected" in capsys.readouterr().err


def test_a_folder_is_loaded_recursively(use_database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(samples_dir() / "sample-data-real-examples" / "taiwan")]) == 0
    assert "files            11" in capsys.readouterr().out


def test_a_missing_path_is_one_clear_line(use_database: Database, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    assert main(["load", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ocds-ingest load: no such file or folder: {tmp_path / 'nope.json'} "
                   "(give JSON files or folders of them)"]


def test_an_unreachable_database_is_one_clear_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        monkeypatch.setenv("DATABASE_URL", f"postgresql://someone:secret-pw@127.0.0.1:{port}/db")
        assert main(["load", str(samples_dir() / "release-arrays")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"ocds-ingest load: connecting to postgresql://someone@127.0.0.1:{port}/db: ")
    assert "secret-pw" not in err[0]


def test_migrate_is_idempotent(use_database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == "the schema is up to date"


def test_a_file_above_the_threshold_is_streamed_in_batches(use_database: Database, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from ingest import documents

    monkeypatch.setattr(documents, "STREAM_THRESHOLD_BYTES", 10_000)  # the 993 KB Armenia page now streams
    monkeypatch.setattr(documents, "_CHUNK_CHARS", 64 * 1024)  # and the window refills many times
    path = samples_dir() / "sample-data-real-examples" / "armenia" / "sample" / "releases" / "6.json"
    assert main(["load", str(path), "--batch-size", "30"]) == 0
    out = capsys.readouterr().out
    assert "releases read    100" in out and "  inserted       100" in out
    assert "round trips" in out
    assert use_database.run("SELECT count(*), count(DISTINCT package_uri) FROM releases", "r") == [[100, 1]]
