"""`ocds-ingest load` and `migrate`: exit codes, one-line errors, the summary."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
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
    assert err[0].startswith(f"ocds-ingest load: connecting to postgresql://someone@127.0.0.1:{port}/db: "
                             "connection refused: nothing listens there; is PostgreSQL running")
    assert "secret-pw" not in err[0] and "retry" not in err[0]


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


# --- mistakes: one line, exit 2, nothing done ---------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[2] / "samples"
TEN_RELEASES = SHIPPED / "uk-find-a-tender_10-releases_bare-array.json"


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(("argv", "said"), [
    (["load", "--batch-size", "0", "x"], "argument --batch-size: must be a whole number above 0, not '0'"),
    (["load", "--batch-size", "-5", "x"], "argument --batch-size: must be a whole number above 0, not '-5'"),
    (["load", "--source", "", "x"], "argument --source: must be 1-63 lower-case letters"),
    (["harvest", "--url", "http://x", "--source", "Has Spaces"], "argument --source: must be 1-63"),
    (["harvest", "--url", "http://x", "--paging", "cursor"], "argument --paging: invalid choice: 'cursor'"),
    (["drain", "--queue-url", "q", "--timeout", "0"], "argument --timeout: must be a number of seconds above 0"),
    (["server", "restart"], "argument action: invalid choice: 'restart'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_a_usage_mistake_is_one_line_and_exit_2(argv: list[str], said: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    line = one_line(capsys)
    assert said in line and line.endswith("--help)")


WRONG_WORKER_SETTINGS = [
    ("WRITE_STRATEGY", "fastest", "WRITE_STRATEGY='fastest' is not one of json, unnest, copy: set one of those or "
     "unset it"),
    ("SEND_AHEAD", "sometimes", "SEND_AHEAD='sometimes' is neither true nor false: set one of those or unset it"),
]


@pytest.mark.parametrize(("variable", "value", "said", "command"), [
    *[(*setting, command) for setting in WRONG_WORKER_SETTINGS
      for command in (["demo"], ["harvest", "--url", "http://x.invalid"])],
    (*WRONG_WORKER_SETTINGS[0], ["load", str(TEN_RELEASES)]),  # load writes as the worker does, without sending ahead
])
def test_a_wrong_worker_setting_stops_the_commands_that_use_it_before_they_start(
        variable: str, value: str, said: str, command: list[str], use_database: Database,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(variable, value)
    assert main(command) == 2
    assert one_line(capsys) == f"ocds-ingest {command[0]}: {said}"
    assert use_database.run("SELECT count(*) FROM releases", "r") == [[0]]


def test_load_takes_its_default_strategy_from_write_strategy(use_database: Database, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import re

    monkeypatch.setenv("WRITE_STRATEGY", "copy")  # copy costs 8 round trips a page, the others 1 or 2
    assert main(["load", str(TEN_RELEASES)]) == 0
    found = re.search(r"(\d+) database round trips", capsys.readouterr().out)
    assert found is not None and int(found.group(1)) >= 8


@pytest.fixture
def password_user(use_database: Database, migrated: str) -> Iterator[str]:
    """A role that must give a password (SCRAM), on the test server: its URL without the password."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("needs to change pg_hba.conf of the server the tests started")
    hba = Path(use_database.run("SHOW hba_file", "hba")[0][0])
    original = hba.read_text()
    use_database.run("DROP ROLE IF EXISTS cli_pw", "role")
    use_database.run("CREATE ROLE cli_pw LOGIN SUPERUSER PASSWORD 'cli-secret'", "role")
    hba.write_text("host all cli_pw 127.0.0.1/32 scram-sha-256\n" + original)
    use_database.run("SELECT pg_reload_conf()", "reload")
    time.sleep(0.2)  # the postmaster rereads the file on the signal, asynchronously
    try:
        yield migrated.replace("postgresql://postgres@", "postgresql://cli_pw@")
    finally:
        hba.write_text(original)
        use_database.run("SELECT pg_reload_conf()", "reload")


def test_a_missing_password_is_one_line_and_pgpassword_is_read(
        password_user: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", password_user)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert main(["migrate"]) == 2
    line = one_line(capsys)
    assert "the server asks for a password and none was given" in line and "PGPASSWORD" in line
    monkeypatch.setenv("PGPASSWORD", "cli-secret")
    assert main(["migrate"]) == 0
    assert "cli-secret" not in capsys.readouterr().out


def test_a_server_without_tls_is_told_to_use_sslmode_disable(use_database: Database, migrated: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the test server has no TLS; another one might")
    monkeypatch.setenv("DATABASE_URL", migrated + "?sslmode=require")
    assert main(["migrate"]) == 2
    line = one_line(capsys)
    assert "the server does not offer TLS" in line and "sslmode=disable" in line and "retry" not in line


# --- empty and odd inputs --------------------------------------------------------------------------------------


def test_nothing_to_load_is_said_and_exits_2(use_database: Database, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("not data")
    (tmp_path / "blank.json").write_text("  \n\n ")
    assert main(["load", str(tmp_path / "empty.json")]) == 2
    assert "nothing to load: the file is empty (0 bytes)" in one_line(capsys)
    assert main(["load", str(tmp_path / "folder")]) == 2
    assert "nothing to load: no files in" in one_line(capsys)
    assert main(["load", str(tmp_path / "blank.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "ocds-ingest load: nothing was loaded: every file is empty"
    assert "files            1  (1 empty)" in captured.out


def test_a_plain_text_file_is_one_rejection(use_database: Database, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "readme.txt"
    path.write_text("these are words and not JSON at all\n" * 100)
    assert main(["load", str(path)]) == 0
    assert "invalid_json           1" in capsys.readouterr().out
    rows = use_database.run("SELECT reason, length(raw_text), detail FROM rejected_releases", "r")
    assert len(rows) == 1 and rows[0][0] == "invalid_json" and rows[0][1] == 3600
    assert "starts with 'these are words" in rows[0][2]


# --- compressed input ------------------------------------------------------------------------------------------


def test_compressed_files_and_archives_are_read_as_the_plain_file(use_database: Database, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import gzip
    import json
    import tarfile
    import zipfile

    raw = TEN_RELEASES.read_bytes()
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(raw))
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("inside/b.json", raw)
        archive.writestr("inside/readme.md", "skipped: not JSON by its name")
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as archive:
        archive.add(TEN_RELEASES, arcname="c/releases.json")
    lines = "".join(json.dumps(release) + "\n" for release in json.loads(raw))
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    for name in ("a.json.gz", "b.zip", "c.tar.gz", "d.jsonl.gz"):
        use_database.run("TRUNCATE releases", "empty")
        assert main(["load", str(tmp_path / name), "--source", "gz"]) == 0, name
        out = capsys.readouterr().out
        assert "releases read    10" in out and "  inserted       10" in out, (name, out)
    assert main(["load", str(tmp_path)]) == 0  # the folder: every file and member found, all already stored
    out = capsys.readouterr().out
    assert "files            4" in out and "releases read    40" in out and "  inserted       0" in out


def test_a_big_compressed_file_is_streamed(use_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import gzip
    import json

    from ingest import documents

    monkeypatch.setattr(documents, "STREAM_THRESHOLD_BYTES", 2_000)  # the 10 releases are above it
    lines = "".join(json.dumps(release) + "\n" for release in json.loads(TEN_RELEASES.read_bytes()))
    (tmp_path / "big.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    assert main(["load", str(tmp_path / "big.jsonl.gz"), "--batch-size", "3", "--no-compile"]) == 0
    out = capsys.readouterr().out
    assert "releases read    10" in out and "  inserted       10" in out
    assert "5 database round trips" in out  # batches of 3, 3, 3 and 1, and preparing the statement once


def test_a_corrupt_compressed_file_is_one_line(use_database: Database, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data at all")
    assert main(["load", str(tmp_path / "bad.json.gz")]) == 2
    line = one_line(capsys)
    assert line.startswith(f"ocds-ingest load: {tmp_path / 'bad.json.gz'} is not a readable compressed file")


# --- progress and Ctrl-C ---------------------------------------------------------------------------------------


def test_the_progress_bar_counts_bytes(use_database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--progress", str(TEN_RELEASES)]) == 0
    err = capsys.readouterr().err
    size_kib = f"{TEN_RELEASES.stat().st_size / 1024:.0f}k"
    assert "loading" in err and "B/s" in err and size_kib in err.lower()


def test_ctrl_c_stops_the_load_and_says_what_was_committed(use_database: Database, migrated: str,
                                                           tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    release = json.loads(TEN_RELEASES.read_bytes())[0]
    with (tmp_path / "many.jsonl").open("w") as out:
        for number in range(60_000):
            out.write(json.dumps({**release, "ocid": f"ocds-ctrlc-{number}"}) + "\n")
    env = {**os.environ, "DATABASE_URL": migrated}
    process = subprocess.Popen([sys.executable, "-m", "ingest.cli", "load", str(tmp_path / "many.jsonl"),
                                "--batch-size", "100"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while use_database.run("SELECT count(*) FROM releases", "r")[0][0] == 0:  # some batches committed
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and out == ""
    stored = use_database.run("SELECT count(*) FROM releases", "r")[0][0]
    assert 0 < stored < 60_000
    assert lines[0].startswith(f"ocds-ingest load: interrupted; committed: {stored} inserted, 0 updated")


# --- the local pipeline: demo, harvest, drain -------------------------------------------------------------------


@pytest.fixture
def pipeline_env(use_database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The demo and harvest set the handlers' environment in-process: restore it, and the worker, afterwards."""
    import handler.worker

    saved = dict(os.environ)
    monkeypatch.setattr(handler.worker, "_worker", None)
    try:
        yield use_database
    finally:
        if handler.worker._worker is not None:
            handler.worker._worker.close()
        os.environ.clear()
        os.environ.update(saved)


def test_a_second_demo_on_the_same_database_writes_nothing(pipeline_env: Database,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    first = capsys.readouterr()
    assert main(["demo"]) == 0
    second = capsys.readouterr()
    inserted = int(first.out.split("releases         ")[1].split(" inserted")[0])
    assert inserted > 0
    assert f"releases         0 inserted, 0 updated, {inserted} unchanged, 0 rejected" in second.out
    assert '{"_aws"' not in first.out + first.err + second.out + second.err  # no CloudWatch metric lines
    assert "succeeded" not in second.out


def test_harvest_names_sources_by_url_warns_of_a_full_last_page_and_restarts(
        pipeline_env: Database, capsys: pytest.CaptureFixture[str]) -> None:
    from ingest.cli_harvest import name_for
    from ingest.local_publisher import LocalPublisher, releases_from
    from ingest.store import harvest_state
    from ingest.store.harvest_state import HarvestState

    with LocalPublisher(releases_from(sorted(SHIPPED.glob("*.json")))) as publisher:
        numbered = f"{publisher.base_url}/pages?page_size=25"
        # GIVEN an API that pages by page numbers, harvested with the default (links) style
        assert main(["harvest", "--url", numbered, "--allow-private-network"]) == 0
        out, err = capsys.readouterr()
        name = name_for(numbered)
        assert f"harvest          {name}: complete, 1 pages fetched" in out
        assert "the first page has no next-page URL at /links/next, but has a number at /pagination/total_pages: " \
               "try --paging page-number" in err
        assert "the walk stopped after 1 page and the last one looked full (25 releases)" in err
        # WHEN the right style is given THEN every page is read and nothing warns
        assert main(["harvest", "--url", numbered, "--allow-private-network", "--paging", "page-number"]) == 0
        out, err = capsys.readouterr()
        served = len(publisher.releases)
        assert pipeline_env.execute_once("SELECT count(*) FROM releases WHERE source = :s", "r", s=name) == [[served]]
        assert "warning" not in err
        # GIVEN another URL on the same host THEN it is another source with its own state
        keyset = f"{publisher.base_url}/keyset?limit=40"
        assert name_for(keyset) != name
        harvest_state.save(pipeline_env, name_for(keyset), HarvestState(cursor=f"{publisher.base_url}/gone"))
        assert main(["harvest", "--url", keyset, "--allow-private-network"]) == 1  # resumes at the saved cursor
        assert f"resuming where the last harvest stopped ({publisher.base_url}/gone)" in capsys.readouterr().err
        assert main(["harvest", "--url", keyset, "--allow-private-network", "--restart"]) == 0
        assert "forgot the saved harvest state" in capsys.readouterr().err
        # AND a loopback URL without --allow-private-network is refused in one line naming the flag
        assert main(["harvest", "--url", keyset]) == 2
        line = one_line(capsys)
        assert "--allow-private-network" in line and "allow_private_network" not in line


def test_drain_says_what_is_missing_in_one_line(use_database: Database, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from moto.server import ThreadedMotoServer

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert main(["drain", "--queue-url", "http://127.0.0.1:9/123456789012/q", "--endpoint-url",
                 "http://127.0.0.1:9"]) == 2
    assert one_line(capsys) == ("ocds-ingest drain: no AWS region: pass --region (or set AWS_REGION); an emulator "
                                "takes any region")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        assert main(["drain", "--queue-url", f"{endpoint}/123456789012/nope", "--endpoint-url", endpoint,
                     "--region", "eu-west-1"]) == 2
        assert one_line(capsys) == (f"ocds-ingest drain: there is no queue {endpoint}/123456789012/nope (region "
                                    "eu-west-1): check --queue-url, --region and --endpoint-url")
    finally:
        server.stop()


# --- the embedded server's lifecycle -----------------------------------------------------------------------------


def test_the_server_command_starts_reports_and_stops_the_embedded_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ingest import cli
    from ingest.store import local_server

    if os.environ.get("TEST_PG_BIN"):
        pytest.skip("the command runs the wheel's server; the lifecycle does not depend on the version")
    monkeypatch.setattr(cli, "LOCAL_DATA_DIR", tmp_path / ".local" / "pgdata")
    placed = local_server.placed_data_dir(tmp_path / ".local" / "pgdata")
    try:
        assert main(["server", "status"]) == 3
        assert capsys.readouterr().out.startswith("not running (no data yet)")
        assert main(["server", "url"]) == 0
        url = capsys.readouterr().out.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        assert main(["server", "status"]) == 0
        version = (placed / "PG_VERSION").read_text().strip()
        assert capsys.readouterr().out.strip() == f"running: PostgreSQL {version} at {url} (data in {placed})"
        assert main(["server", "stop"]) == 0
        assert capsys.readouterr().out.strip() == "stopped"
        assert main(["server", "status"]) == 3
        assert capsys.readouterr().out.startswith(f"not running (data in {placed})")
        assert main(["server", "stop", "--delete"]) == 0
        assert capsys.readouterr().out.startswith(f"not running; deleted {placed}")
        assert not placed.exists()
    finally:
        local_server.stop(placed)
        local_server.delete_data(placed)


def test_standard_input_is_read_with_a_dash(use_database: Database, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    given = b'{"releases": [{"ocid": "ocds-demo-1", "date": "2024-01-01"}]}'  # the README's example
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(given)))
    assert main(["load", "-"]) == 0
    assert "    missing_id             1" in capsys.readouterr().out
    assert use_database.run("SELECT source, reason, count(*) FROM rejected_releases GROUP BY 1, 2", "r") == [
        ["files", "missing_id", 1]]


def test_an_interrupted_local_run_puts_the_harvest_state_back(use_database: Database, migrated: str) -> None:
    from datetime import UTC, datetime

    from ingest.local_pipeline import Interrupted, _state_kept_unless_drained
    from ingest.store import harvest_state
    from ingest.store.harvest_state import HarvestState

    before = HarvestState(cursor=None, watermark=datetime(2024, 1, 1, tzinfo=UTC))
    harvest_state.save(use_database, "api", before)
    # WHEN the walk moved the cursor past pages that were only in the local queue, and Ctrl-C came
    with pytest.raises(Interrupted), _state_kept_unless_drained(migrated, {"api": before}):
        harvest_state.save(use_database, "api", HarvestState(cursor="http://127.0.0.1:9/page-3"))
        raise KeyboardInterrupt
    # THEN the next run starts where this one did, and skips nothing
    assert harvest_state.load(use_database, "api") == before
