"""compiled_releases kept current by the write path, against the real PostgreSQL: golden outputs, exact numbers,
record packages, convergence in any order and under concurrent writers, the incremental merge, the CLI."""

from __future__ import annotations

import copy
import json
import random
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.cli import main
from ingest.compile import compile_releases, loads, merge_rules
from ingest.pages import save_page
from ingest.store.compiled import compile_ocids, inputs_hash, ocids_to_compile, stored_releases
from ingest.store.connection import Database, connect_url
from tests.conftest import samples_dir
from tests.tools.tcp_proxy import LatencyProxy


def release(ocid: str, release_id: str, date: str, **extra: Any) -> dict[str, Any]:
    return {"ocid": ocid, "id": release_id, "date": date, "tag": ["tender"], **extra}


def package(*releases: dict[str, Any], version: str | None = "1.1") -> dict[str, Any]:
    meta: dict[str, Any] = {"uri": "https://example.org/page", "publisher": {"name": "Example"}}
    if version:
        meta["version"] = version
    return {**meta, "releases": list(releases)}


def compiled(db: Database, ocid: str) -> dict[str, Any]:
    rows = db.execute("SELECT data::text FROM compiled_releases WHERE ocid = :ocid", "read", ocid=ocid)
    assert rows, f"no compiled release for {ocid}"
    return loads(rows[0][0])


def compiled_table(db: Database) -> dict[str, tuple[Any, ...]]:
    rows = db.run("SELECT ocid, data::text, release_count, inputs_hash, ocds_version, compiled_from, release_date, "
                  "buyer_id, tender_title, awards_count FROM compiled_releases WHERE data IS NOT NULL", "read")
    return {row[0]: (loads(row[1]), *row[2:]) for row in rows}


def assert_equals_compiling_from_scratch(db: Database) -> None:
    """The invariant: every ocid with releases has exactly the compile of all its stored releases."""
    table = compiled_table(db)
    ocids = [row[0] for row in db.run("SELECT DISTINCT ocid FROM releases", "read")]
    assert sorted(ocid for ocid, row in table.items() if row[4] == "releases") == sorted(ocids)
    for ocid in ocids:
        version, releases = stored_releases(db, ocid)
        rows = db.execute("SELECT release_id, content_hash, release_date FROM releases WHERE ocid = :ocid",
                          "read", ocid=ocid)
        rows.sort(key=lambda row: (row[2], row[0], bytes(row[1])))
        data, count, hashed, stored_version = table[ocid][:4]
        assert data == compile_releases(releases, merge_rules(version)), ocid
        assert (count, bytes(hashed), stored_version) == (
            len(rows), inputs_hash((row[0], bytes(row[1])) for row in rows), version)
        assert table[ocid][5] == rows[-1][2]  # the latest release's date


# --- the normative outputs, through the write path ---------------------------------------------------------

@pytest.mark.parametrize("number", [1, 2])
def test_ocdskit_golden_outputs_through_the_write_path(db: Database, number: int) -> None:
    root = samples_dir() / "ocdskit-realdata"
    save_page(db, (root / f"release-package-{number}.json").read_bytes(), "golden")
    expected = loads((root / f"compiled-release-{number}.json").read_text())
    assert compiled(db, expected["ocid"]) == expected
    row = db.execute("SELECT release_count, ocds_version, compiled_from, buyer_name IS NOT NULL FROM "
                     "compiled_releases WHERE ocid = :ocid", "read", ocid=expected["ocid"])[0]
    assert row == [2, "1.0", "releases", True]  # CDMX packages have no version: 1.0.3's rules


@pytest.mark.parametrize("number", [1, 2])
def test_cli_prints_the_golden_versioned_release(db: Database, migrated: str, number: int,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated)
    root = samples_dir() / "ocdskit-realdata"
    save_page(db, (root / f"release-package-{number}.json").read_bytes(), "golden")
    expected = loads((root / f"versioned-release-{number}.json").read_text())
    assert main(["compile", "--versioned", "--ocid", expected["ocid"]]) == 0
    assert loads(capsys.readouterr().out) == expected


def test_standard_update_examples_in_any_page_order(db: Database) -> None:
    root = samples_dir() / "standard-merging-examples" / "updates"
    pages = [(root / f"{name}.json").read_bytes() for name in ("award2", "tender3", "tender1", "award1", "tender2")]
    for page in pages:
        save_page(db, page, "standard")
    expected = loads((root / "merged.json").read_text())["records"][0]["compiledRelease"]
    assert compiled(db, expected["ocid"]) == expected


def test_record_package_releases_are_merged_and_the_publishers_compiled_release_kept_aside(db: Database) -> None:
    path = samples_dir() / "standard-merging-examples" / "embedded_releases.json"
    save_page(db, path.read_bytes(), "standard")
    record = loads(path.read_text())["records"][0]
    row = db.execute("SELECT compiled_from, release_count, publisher_data::text FROM compiled_releases "
                     "WHERE ocid = :ocid", "read", ocid=record["ocid"])[0]
    assert row[:2] == ["releases", 7]
    assert loads(row[2]) == record["compiledRelease"]  # the publisher's, verbatim, in its own column
    releases = sorted(record["releases"], key=lambda item: item["date"])
    assert compiled(db, record["ocid"]) == compile_releases(releases, merge_rules("1.1"))


def test_an_ocid_with_only_linked_releases_takes_the_publishers_compiled_release(db: Database) -> None:
    path = samples_dir() / "ocdskit-realdata" / "record-package_linked-releases.json"
    document = loads(path.read_text())
    save_page(db, path.read_bytes(), "records")
    for record in document["records"]:
        row = db.execute("SELECT compiled_from, release_count, data::text = publisher_data::text FROM "
                         "compiled_releases WHERE ocid = :ocid", "read", ocid=record["ocid"])[0]
        assert row == ["publisher", 0, True]
    # A release of its own arriving later takes over.
    ocid = document["records"][0]["ocid"]
    save_page(db, package(release(ocid, "own-1", "2030-01-01T00:00:00Z", tender={"title": "own"})), "later")
    assert compiled(db, ocid)["tender"] == {"title": "own"}
    assert db.execute("SELECT compiled_from FROM compiled_releases WHERE ocid = :o", "r", o=ocid) == [["releases"]]


def test_every_ocid_of_the_real_samples_is_compiled_as_from_scratch(db: Database) -> None:
    root = samples_dir()
    files = sorted(p for p in (root / "sample-data-real-examples").rglob("*.json")) + sorted(
        (root / "ocdskit-realdata").glob("*package*.json"))
    for path in files:
        save_page(db, path.read_bytes(), "samples", context=str(path))
    assert_equals_compiling_from_scratch(db)


# --- exactness ---------------------------------------------------------------------------------------------

def test_numbers_are_exact_in_the_compiled_release(db: Database) -> None:
    huge = "8" * 5000  # int() refuses more than 4300 digits
    text = ('{"ocid":"ocds-exact","id":"1","date":"2020-01-01T00:00:00Z",'
            '"tender":{"value":{"amount":12345678901234567890.123456789,"currency":"USD"}},'
            '"awards":[{"id":"a","value":{"amount":1e-400,"currency":"USD"}},'
            f'{{"id":"b","value":{{"amount":{huge},"currency":"USD"}}}}]}}')
    # Stored directly: what matters here is the compile's reading and writing, whatever the page reader does.
    db.execute("INSERT INTO releases (ocid, release_id, release_date, date_text, source, content_hash, data) "
               "VALUES ('ocds-exact', '1', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z', 'exact', '\\x00', "
               "CAST(:data AS jsonb))", "insert", data=text)
    assert compile_ocids(db, ["ocds-exact"]).compiled == 1
    row = db.execute("SELECT data->'tender'->'value'->>'amount', value_amount::text, "
                     "data->'awards'->0->'value'->'amount' = '1e-400'::jsonb, awards_amount = :total::numeric "
                     "FROM compiled_releases WHERE ocid = 'ocds-exact'", "read",
                     total=huge + "." + "0" * 399 + "1")[0]
    assert row == ["12345678901234567890.123456789", "12345678901234567890.123456789", True, True]
    assert compiled(db, "ocds-exact")["awards"][1]["value"]["amount"] == Decimal(huge)


# --- convergence -------------------------------------------------------------------------------------------

def _pool() -> list[dict[str, Any]]:
    """Releases of three ocids: equal dates with different ids, a release id republished with a later date,
    nulls that empty an object, and a 1.0-only ocid."""
    return [
        release("ocds-a", "1", "2020-01-01T00:00:00Z", tender={"title": "t1", "value": {"amount": 1}}),
        release("ocds-a", "2", "2020-01-02T00:00:00Z", tender={"title": "t2"}, awards=[{"id": "x"}]),
        release("ocds-a", "3", "2020-01-02T00:00:00Z", tender={"title": "t3", "value": {"amount": None}}),
        release("ocds-a", "2", "2020-01-05T00:00:00Z", tender={"title": "t2 again"}),  # a new version of "2"
        release("ocds-a", "4", "2020-01-03T00:00:00+05:00", buyer={"id": "B", "name": "Buyer"}),
        release("ocds-b", "1", "2021-06-01T00:00:00Z", awards=[{"id": "1", "value": {"amount": 5.5}}]),
        release("ocds-b", "2", "2021-06-01T00:00:00Z", awards=[{"id": "1", "status": "active"}]),
        release("ocds-b", "3", "2021-06-03T00:00:00Z", awards=[{"id": "2", "value": {"amount": 1}}]),
        release("ocds-c", "1", "2019-01-01T00:00:00Z", tender={"tenderers": [{"id": "p", "name": "P"}]}),
        release("ocds-c", "2", "2019-01-02T00:00:00Z", tender={"tenderers": [{"id": "q"}]}),
    ]


def _pages(indexes: list[list[int]]) -> list[dict[str, Any]]:
    pool = _pool()
    pages = []
    for group in indexes:
        members = [copy.deepcopy(pool[i]) for i in group]
        # ocds-c arrives in 1.0 packages (no version): whole-list rules for tenderers
        version = None if all(item["ocid"] == "ocds-c" for item in members) else "1.1"
        pages.append(package(*members, version=version))
    return pages


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=4), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_any_order_of_pages_and_replays_converges_to_compiling_from_scratch(
        db: Database, groups: list[list[int]], rng: random.Random) -> None:
    db.run("TRUNCATE releases, compiled_releases", "reset")
    pages = _pages(groups)
    order = pages + [rng.choice(pages) for _ in range(2)]  # replays
    rng.shuffle(order)
    for page in order:
        save_page(db, page, "s")
    assert_equals_compiling_from_scratch(db)


def test_concurrent_workers_on_the_same_ocids_lose_nothing_and_do_not_deadlock(db: Database, migrated: str) -> None:
    pool = _pool()
    pages = [package(copy.deepcopy(item)) for item in pool] + [package(*copy.deepcopy(pool[:5])),
                                                               package(*copy.deepcopy(pool[5:]))]
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        connection = connect_url(migrated)
        try:
            order = list(range(len(pages)))
            random.Random(seed).shuffle(order)
            for index in order[: len(order) - seed]:  # each worker misses a few pages; together they have all
                save_page(connection, pages[index], "s")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(3):
        db.run("TRUNCATE releases, compiled_releases", "reset")
        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert db.run("SELECT count(*) FROM releases", "count") == [[9]]
        assert_equals_compiling_from_scratch(db)


# --- incremental -------------------------------------------------------------------------------------------

def test_newer_releases_are_merged_onto_the_stored_compiled_release(db: Database) -> None:
    dates = [f"2020-01-01T00:{minute:02d}:00Z" for minute in range(40)]
    for n, date in enumerate(dates[:30]):
        save_page(db, package(release("ocds-inc", str(n), date, tender={"title": f"t{n}"},
                                      awards=[{"id": str(n % 3), "value": {"amount": n}}])), "s")
    save_page(db, package(release("ocds-inc", "x", dates[30])), "s", compile_releases=False)
    # One new release, newer than all: one merge, onto the stored compiled release.
    result = compile_ocids(db, ["ocds-inc"])
    assert (result.compiled, result.incremental, result.merges) == (1, 1, 1)
    # Nothing new: nothing merged.
    assert compile_ocids(db, ["ocds-inc"]).unchanged == 1
    # An older release arriving late: every release is merged again.
    save_page(db, package(release("ocds-inc", "late", "2019-01-01T00:00:00Z")), "s", compile_releases=False)
    result = compile_ocids(db, ["ocds-inc"])
    assert (result.incremental, result.merges) == (0, 32)
    # A new version of an old release: again in full.
    save_page(db, package(release("ocds-inc", "5", dates[35], tender={"title": "moved"})), "s",
              compile_releases=False)
    assert compile_ocids(db, ["ocds-inc"]).merges == 32
    assert_equals_compiling_from_scratch(db)


def test_compiling_costs_a_fixed_number_of_round_trips_whatever_the_page_size(db: Database, migrated: str) -> None:
    from ingest.store.connection import parse_url

    settings_ = parse_url(migrated)
    with LatencyProxy(settings_.host, settings_.port) as proxy:
        proxied = connect_url(f"postgresql://{settings_.user}@127.0.0.1:{proxy.port}/{settings_.database}")
        save_page(proxied, package(release("ocds-warm", "1", "2020-01-01T00:00:00Z")), "s")  # prepares once
        save_page(proxied, package(release("ocds-warm", "2", "2020-01-02T00:00:00Z")), "s")
        trips = set()
        for size in (1, 10, 300):
            proxy.reset_round_trips()
            result = save_page(proxied, package(*[release(f"ocds-rt-{size}-{n}", "1", "2020-01-01T00:00:00Z")
                                                  for n in range(size)]), "s")
            assert result.ocids_compiled == size
            assert proxy.round_trips == result.round_trips
            trips.add(result.round_trips - 1)
        proxied.close()
    # BEGIN, the locks, two reads, the releases, the upsert, COMMIT (300 ocids: two batches of 250)
    assert max(trips) <= 2 * 7


def test_the_setting_turns_compiling_off_and_the_cli_catches_up(db: Database, migrated: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated)
    path = tmp_path / "page.json"
    path.write_text(json.dumps(package(release("ocds-off", "1", "2020-01-01T00:00:00Z"),
                                       release("ocds-off-2", "1", "2020-01-01T00:00:00Z"))))
    assert main(["load", "--no-compile", str(path), "--source", "off"]) == 0
    assert db.run("SELECT count(*) FROM compiled_releases", "count") == [[0]]
    assert ocids_to_compile(db, "off") == ["ocds-off", "ocds-off-2"] or sorted(ocids_to_compile(db, "off")) == [
        "ocds-off", "ocds-off-2"]
    capsys.readouterr()
    assert main(["compile", "--ocid", "ocds-off"]) == 0
    assert "compiled 1 of 1 contracting processes" in capsys.readouterr().out
    assert main(["compile", "--source", "off"]) == 0
    assert "compiled 2 of 2" in capsys.readouterr().out
    assert_equals_compiling_from_scratch(db)


def test_versioned_without_an_ocid_is_one_clear_line(db: Database, migrated: str, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated)
    assert main(["compile", "--versioned"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ocds-ingest compile: --versioned prints one contracting process: give --ocid X (and no --source)"]
    assert main(["compile", "--versioned", "--ocid", "nothing-here"]) == 2
    assert "no releases are stored for ocid 'nothing-here'" in capsys.readouterr().err


def test_releases_the_merge_refuses_are_recorded_and_the_page_goes_on(db: Database) -> None:
    first = release("ocds-bad", "1", "2020-01-01T00:00:00Z", tender={"title": "text"})
    second = release("ocds-bad", "2", "2020-01-02T00:00:00Z", tender={"title": {"an": "object"}},
                     awards=[{"id": ["a list"]}])
    result = save_page(db, package(first, second, release("ocds-fine", "1", "2020-01-01T00:00:00Z")), "s")
    assert result.ocids_compiled == 2
    row = db.execute("SELECT data IS NULL, release_count, compile_error FROM compiled_releases WHERE ocid = :o",
                     "read", o="ocds-bad")[0]
    # ocdsmerge's own words (an inconsistent type, or an id that is a list: whichever it meets first)
    assert row[:2] == [True, 2] and row[2].split(":")[0] in ("InconsistentTypeError", "TypeError")
    # The same releases again: not retried, nothing rewritten.
    assert compile_ocids(db, ["ocds-bad"]).unchanged == 1
    assert compiled(db, "ocds-fine")["id"] == "ocds-fine-2020-01-01T00:00:00Z"
    # A newer release: merged with all of them again (there is no compiled release to merge onto).
    save_page(db, package(release("ocds-bad", "3", "2020-01-03T00:00:00Z")), "s")
    row = db.execute("SELECT release_count, compile_error IS NOT NULL FROM compiled_releases WHERE ocid = :o",
                     "read", o="ocds-bad")[0]
    assert row == [3, True]


def test_compile_releases_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from handler import environment
    from ingest.errors import ConfigurationError

    monkeypatch.delenv("COMPILE_RELEASES", raising=False)
    assert environment.compile_releases() == "deferred"
    for value, expected in (("false", "off"), ("0", "off"), ("OFF", "off"), ("true", "inline"), ("yes", "inline"),
                            ("Deferred", "deferred"), (" inline ", "inline")):
        monkeypatch.setenv("COMPILE_RELEASES", value)
        assert environment.compile_releases() == expected
    monkeypatch.setenv("COMPILE_RELEASES", "maybe")
    with pytest.raises(ConfigurationError, match="COMPILE_RELEASES"):
        environment.compile_releases()


def test_an_incremental_merge_that_might_differ_merges_every_release(db: Database) -> None:
    # /buyer/period is first a null, then an object, then a string: the reference refuses the three, but only
    # because it met the null first, which the stored compiled release of the first no longer holds.
    periods = [None, {"title": None}, ""]
    pages = [package(release("ocds-path", str(n), f"2020-01-0{n + 1}T00:00:00Z", buyer={"period": period}),
                     version=None) for n, period in enumerate(periods)]
    save_page(db, pages[0], "s")
    save_page(db, package(*pages[1]["releases"], *pages[2]["releases"], version=None), "s")
    row = db.execute("SELECT data IS NULL, release_count, compile_error FROM compiled_releases WHERE ocid = :o",
                     "read", o="ocds-path")[0]
    assert row[:2] == [True, 3] and "InconsistentTypeError" in row[2]
