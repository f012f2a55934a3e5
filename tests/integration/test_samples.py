"""Every file of ../shared/ocds-samples, loaded into a real PostgreSQL, with exact outcomes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from ingest.pages import PageResult, save_page
from ingest.store.connection import Database
from tests.conftest import samples_dir, table_checksum


def all_files() -> list[Path]:
    root = samples_dir()
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix == ".json")


def is_real_publisher_file(path: Path) -> bool:
    """The files the samples README counts as real publisher data (903 releases, 782 keys, 709 ocids)."""
    relative = path.relative_to(samples_dir()).as_posix()
    if relative.startswith(("sample-data-real-examples/", "release-arrays/")):
        return True
    if relative.startswith("api-pages/"):
        return "portugal" in relative or "paraguay" in relative
    return relative.startswith("ocdskit-realdata/") and "package" in path.name


def load(db: Database, files: list[Path], source: str = "samples") -> PageResult:
    total = PageResult()
    for path in files:
        total += save_page(db, path.read_bytes(), source, context=str(path))
    return total


def test_real_publisher_files_store_every_release_once(db: Database) -> None:
    # GIVEN the real publishers' files, in a shuffled order
    files = [path for path in all_files() if is_real_publisher_file(path)]
    random.Random(7).shuffle(files)
    # WHEN each file is saved as one page
    result = load(db, files)
    # THEN every release object was read, none rejected, one row per (ocid, id) as the README counts them
    assert result.releases_read == 903
    assert result.rejected_total == 0
    assert db.run("SELECT count(*), count(DISTINCT ocid) FROM releases", "count")[0] == [782, 709]
    assert result.inserted + result.updated + result.unchanged == 903
    assert result.inserted == 782


def test_the_whole_corpus_loads_with_exact_counts(db: Database) -> None:
    result = load(db, all_files())
    # 2,082 release objects and 5 other values that were rejected (read = inserted + updated + unchanged + rejected)
    assert result.releases_read == 2087
    assert result.releases_read == result.inserted + result.updated + result.unchanged + result.rejected_total
    assert dict(result.rejected) == {
        "invalid_json": 1,        # broken-json-syntax.json: the part after the syntax error
        "invalid_package": 3,     # 'releases' is an object in the two encoding fixtures and the astral one
        "missing_id": 24,         # versioned releases (ocdskit/ocds-merge expected outputs) and id-less releases
        "missing_ocid": 1010,     # 1001 empty objects, nulls, the 7 OCDS 1.1.5/1.0.3 schemas, 1 ocds-merge schema
        "not_an_object": 1,       # {"releases": [true]}
        "not_ocds": 1,            # the number 1 after a release (concatenated-json-mixed.json)
    }
    assert result.linked_releases == 120
    assert result.empty_packages == 1
    rows, rejected, publishers, uncompiled = db.run(
        "SELECT (SELECT count(*) FROM releases), (SELECT count(*) FROM rejected_releases), "
        "(SELECT count(*) FROM compiled_releases WHERE publisher_data IS NOT NULL), "
        "(SELECT count(*) FROM (SELECT ocid FROM releases EXCEPT SELECT ocid FROM compiled_releases "
        "WHERE compiled_from = 'releases') missing)", "count")[0]
    assert rejected == 1040  # every rejection is its own row: nothing collapsed, nothing dropped
    assert rows == 825
    assert publishers == 56  # 70 compiledReleases in the record files, for 56 distinct ocids (newest kept)
    assert uncompiled == 0  # every ocid with a release has its compiled release


AWKWARD = {
    # file: (rows stored, rejections by reason, duplicates inside the page, linked releases)
    "1001-empty-release-objects.json": (0, {"missing_ocid": 1001}, 0, 0),
    "array-of-release-packages-duplicate.json": (1, {}, 1, 0),
    "bad-ocid-prefixes.json": (7, {}, 0, 0),
    "bare-release-no-package.json": (1, {}, 0, 0),
    "broken-json-syntax.json": (1, {"invalid_json": 1}, 0, 0),
    "canada-2-releases_schema-invalid.json": (1, {"missing_id": 1}, 0, 0),
    "concatenated-json-mixed.json": (1, {"not_ocds": 1}, 0, 0),
    "duplicate-ids-in-arrays.json": (2, {}, 2, 0),
    "duplicate-ocid-and-id.json": (2, {}, 3, 0),
    "encoding-latin1.json": (0, {"invalid_package": 1}, 0, 0),
    "encoding-utf-16-bom.json": (0, {"invalid_package": 1}, 0, 0),
    "missing-release-id.json": (0, {"missing_id": 2}, 0, 0),
    "non-ascii-astral-utf-8.json": (0, {"invalid_package": 1}, 0, 0),
    "real-cdmx_encoding-iso-8859-1.json": (3, {}, 0, 0),
    "records-duplicate-ocid.json": (0, {}, 0, 5),
    "records-missing-ocid.json": (0, {}, 0, 2),
    "release-with-nulls.json": (0, {"missing_ocid": 1}, 0, 0),
    "releases-array-of-non-objects.json": (0, {"not_an_object": 1}, 0, 0),
    "same-id-different-ocids.json": (2, {}, 0, 0),
    "top-level-empty-array.json": (0, {}, 0, 0),
    "version-unrecognized-123.123.json": (1, {}, 0, 0),
    "version-with-patch-100.100.0.json": (1, {}, 0, 0),
    "version-wrong-type-number.json": (1, {}, 0, 0),
}


@pytest.mark.parametrize("name", sorted(AWKWARD))
def test_awkward_file(db: Database, name: str) -> None:
    rows, rejected, duplicates, linked = AWKWARD[name]
    result = save_page(db, (samples_dir() / "invalid-and-awkward" / name).read_bytes(), "awkward", name)
    assert db.run("SELECT count(*) FROM releases", "count")[0][0] == rows
    assert dict(result.rejected) == rejected
    assert db.run("SELECT count(*) FROM rejected_releases", "count")[0][0] == sum(rejected.values())
    assert result.duplicates_in_page == duplicates
    assert result.linked_releases == linked


def test_the_awkward_folder_has_no_file_this_suite_forgot() -> None:
    present = {path.name for path in (samples_dir() / "invalid-and-awkward").iterdir()}
    assert present == set(AWKWARD)


def test_legacy_and_utf16_text_is_decoded_not_mangled(db: Database) -> None:
    folder = samples_dir() / "invalid-and-awkward"
    save_page(db, (folder / "encoding-latin1.json").read_bytes(), "awkward", "latin1")
    save_page(db, (folder / "encoding-utf-16-bom.json").read_bytes(), "awkward", "utf16")
    save_page(db, (folder / "real-cdmx_encoding-iso-8859-1.json").read_bytes(), "awkward", "cdmx")
    raw = {row[0]: row[1] for row in db.run("SELECT context, raw_text FROM rejected_releases", "read")}
    assert '"é"' in raw["latin1"]
    assert "éαГ😼𝒞人" in raw["utf16"]
    names = {row[0] for row in db.run("SELECT buyer_name FROM releases", "read")}
    assert names == {"SECRETARÍA DE FINANZAS"}


def test_stored_data_equals_the_input_release(db: Database) -> None:
    path = samples_dir() / "api-pages" / "portugal-base-gov-pt_links-next_offset-1.json"
    import json

    releases = json.loads(path.read_bytes())[0]["releases"]
    save_page(db, path.read_bytes(), "portugal", "page 1")
    stored = {(row[0], row[1]): row[2] for row in db.run("SELECT ocid, release_id, data FROM releases", "read")}
    assert len(stored) == 100
    for release in releases:
        assert stored[(release["ocid"], release["id"])] == release


def test_date_formats_of_real_publishers(db: Database) -> None:
    folder = samples_dir() / "sample-data-real-examples"
    load(db, sorted((folder / "taiwan").rglob("*.json")) + sorted((folder / "armenia").rglob("*.json")))
    flags = Counter(tuple(row[0]) for row in db.run("SELECT flags FROM releases", "read"))
    assert flags == {("date_only", "tag_string"): 11, (): 100}
    row = db.run("SELECT release_date::text FROM releases WHERE ocid LIKE 'ocid-6as3t2%' LIMIT 1", "read")[0]
    assert row[0].endswith("00:00:00+00")


def test_replaying_the_corpus_changes_nothing(db: Database) -> None:
    files = [path for path in all_files() if is_real_publisher_file(path)]
    load(db, files)
    before = table_checksum(db)
    again = load(db, list(reversed(files)))
    assert again.inserted == 0 and again.updated == 0
    assert table_checksum(db) == before


def test_every_stored_release_is_its_newest_input_exactly(db: Database) -> None:
    """Over every sample file: each row holds, byte for byte as JSON, the input release the conflict rule picks."""
    import json

    from ingest import documents
    from ingest.releases import ReleaseRow, newest_per_key, to_row

    files = all_files()
    rows: list[ReleaseRow] = []
    for path in files:
        for item in documents.read_bytes(path.read_bytes()).items():
            if isinstance(item, documents.Found):
                row = to_row(item, "samples")
                if isinstance(row, ReleaseRow):
                    rows.append(row)
    expected, _ = newest_per_key(rows)
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    load(db, shuffled)
    stored = {(r[0], r[1]): (r[2], bytes(r[3])) for r in db.run(
        "SELECT ocid, release_id, data, content_hash FROM releases", "read")}
    assert len(stored) == len(expected) == 825
    for row in expected:
        data, content_hash = stored[row.key]
        assert content_hash == row.content_hash
        assert data == json.loads(row.data_text)
