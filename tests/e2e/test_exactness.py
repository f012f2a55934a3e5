"""Exactly what publishers sent (issue 8): hostile but realistic inputs, through `load`'s path and the worker
handler, against a real PostgreSQL. The invariants:

- every release read is a row in ``releases`` or a row in a quarantine table holding its text as published, and
  read = inserted + updated + unchanged + rejected;
- what is stored is what was published (numbers exact), except the documented normalisations;
- bad data never raises (so never reaches the DLQ), and one bad release never takes its neighbours down.
"""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from ingest import documents
from ingest.messages import by_claim_check
from ingest.pages import PageResult, load_stream, save_page
from ingest.store.connection import Database
from tests.e2e.conftest import invoke, sqs_record

META = '"uri":"https://example.org/p","publisher":{"name":"Pub"},"version":"1.1"'


def release_text(ocid: str, release_id: str = "1", extra: str = "") -> str:
    return f'{{"ocid":"{ocid}","id":"{release_id}","date":"2020-01-01T00:00:00Z"{extra}}}'


def package_text(*releases: str, meta: str = META) -> str:
    return "{" + meta + ',"releases":[' + ",".join(releases) + "]}"


def rows(db: Database) -> dict[tuple[str, str], list[Any]]:
    return {(r[0], r[1]): r[2:] for r in db.run(
        "SELECT ocid, release_id, data::text, value_amount::text, flags, publisher_name, package_uri FROM releases",
        "read")}


def rejections(db: Database) -> list[list[Any]]:
    return db.run("SELECT reason, raw_text, position, ocid FROM rejected_releases ORDER BY position", "read")


def adds_up(result: PageResult) -> None:
    assert result.releases_read == result.inserted + result.updated + result.unchanged + result.rejected_total


def load_file(db: Database, data: bytes) -> PageResult:
    total = PageResult()
    for part in load_stream(db, io.BytesIO(data), len(data), "s", "file.json", batch_size=50):
        total += part
    adds_up(total)
    return total


# --- 1, 2: numbers ------------------------------------------------------------------------------------------

NUMBERS = ["12345678901234567890.123456789", "0.1000000000000000055511151231257827", "1e-400", "1E+400", "-0.5",
           "1" + "0" * 5000, "1e9999", "9007199254740993", "1.50e3", "2.500", "-0.0E+5"]


def test_every_number_is_stored_exactly_in_data_and_value_amount(db: Database) -> None:
    releases = [release_text(f"ocds-n{i}", extra=f',"tender":{{"value":{{"amount":{n},"currency":"XTS"}},'
                             f'"other":[{n},{{"x":{n}}}]}}') for i, n in enumerate(NUMBERS)]
    result = save_page(db, package_text(*releases), "s")
    adds_up(result)
    assert result.inserted == len(NUMBERS)
    for i, number in enumerate(NUMBERS):
        # (the column's scale too: 1.50e3 is 1500 in both, not 1.50E+3 in one and 1500 in the other)
        exact = db.execute_once("SELECT value_amount = CAST(:n AS numeric), "
                       "(data #>> '{tender,value,amount}')::numeric = CAST(:n AS numeric), "
                       "(data #>> '{tender,other,1,x}')::numeric = CAST(:n AS numeric), "
                       "value_amount::text = (data #>> '{tender,value,amount}')::numeric::text "
                       "FROM releases WHERE ocid = :o", "check", n=number, o=f"ocds-n{i}")
        assert exact == [[True, True, True, True]], number


def test_a_number_beyond_numeric_is_quarantined_alone(db: Database) -> None:
    result = save_page(db, package_text(release_text("ocds-a"), release_text("ocds-b", extra=',"x":1e200000')), "s")
    adds_up(result)
    assert (result.inserted, dict(result.rejected)) == (1, {"number_out_of_range": 1})
    assert rejections(db)[0][1] == release_text("ocds-b", extra=',"x":1e200000')


def test_numeric_ids_that_differ_beyond_double_precision_are_two_releases(db: Database) -> None:
    page = package_text('{"ocid":"ocds-i","id":9007199254740993.0,"date":"2020-01-01T00:00:00Z"}',
                        '{"ocid":"ocds-i","id":9007199254740992.0,"date":"2020-01-01T00:00:00Z"}',
                        '{"ocid":"ocds-i","id":1e3,"date":"2020-01-01T00:00:00Z"}')
    result = save_page(db, page, "s")
    assert result.inserted == 3
    assert set(rows(db)) == {("ocds-i", "9007199254740993.0"), ("ocds-i", "9007199254740992.0"), ("ocds-i", "1e3")}


# --- 3, 4: encodings ----------------------------------------------------------------------------------------


def test_one_latin1_byte_changes_only_its_own_release(db: Database) -> None:
    good = release_text("ocds-good", extra=',"title":"Café"').encode("utf-8")
    bad = release_text("ocds-bad", extra=',"title":"Caf\xe9"').encode("latin-1")
    data = b"{" + META.encode() + b',"releases":[' + good + b"," + bad + b"]}"
    result = load_file(db, data)
    assert result.inserted == 2
    stored = rows(db)
    assert json.loads(stored[("ocds-good", "1")][0])["title"] == "Café"
    assert json.loads(stored[("ocds-bad", "1")][0])["title"] == "Café"
    assert stored[("ocds-good", "1")][2] == []
    assert stored[("ocds-bad", "1")][2] == ["legacy_encoding"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
def test_utf16_with_an_odd_byte_count_loads_and_quarantines_the_stray_byte(db: Database, encoding: str) -> None:
    text = package_text(release_text("ocds-u1", extra=',"t":"Ñandú"'), release_text("ocds-u2"))
    data = text.encode(encoding) + b"\n"
    assert len(data) % 2 == 1
    result = load_file(db, data)
    assert result.inserted == 2
    assert json.loads(rows(db)[("ocds-u1", "1")][0])["t"] == "Ñandú"
    assert [r[0] for r in rejections(db)] == ["invalid_json"]


@mock_aws
def test_a_utf16_page_with_an_odd_byte_count_is_not_a_failed_message(db: Database, lambda_env: None) -> None:
    # GIVEN a UTF-16 page with an odd byte count behind a claim check (bytes, as a fetched page is)
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="pages", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    page = package_text(release_text("ocds-w1"), release_text("ocds-w2")).encode("utf-16-le") + b"\n"
    s3.put_object(Bucket="pages", Key="p.json", Body=page)
    # WHEN the worker handler takes the message THEN it is not failed, and the releases are stored
    response = invoke({"Records": [sqs_record(by_claim_check("s", "pages", "p.json"), "m1")]})
    assert response == {"batchItemFailures": []}
    assert {("ocds-w1", "1"), ("ocds-w2", "1")} <= set(rows(db))
    assert [r[0] for r in rejections(db)] == ["invalid_json"]  # the stray byte


# --- 5, 6: NUL and lone surrogates --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ['"Pub\\u0000lisher"', '"Pub\\ud800"', '"\\u0000"'])
def test_package_fields_with_nul_or_lone_surrogates_are_escaped_and_flagged(db: Database, name: str) -> None:
    meta = f'"uri":{name},"publisher":{{"name":{name}}},"version":"1.1"'
    result = save_page(db, package_text(release_text("ocds-p1"), release_text("ocds-p2"), meta=meta), "s")
    adds_up(result)
    assert result.inserted == 2
    for _, _, flags, publisher, uri in rows(db).values():
        assert flags == ["package_escaped"]
        assert publisher == uri and "\\u" in publisher


def test_nul_never_merges_or_empties_distinct_things(db: Database) -> None:
    page = package_text(
        release_text("\\u0000"),                       # an ocid of only NUL: never the empty string
        release_text("X\\u0000"), release_text("X"),   # two keys that NUL removal would merge
        release_text("ocds-k", extra=',"k\\u0000":1,"k":2'),  # two object keys that NUL removal would merge
        release_text("ocds-v", extra=',"note":"a\\u0000b"'),  # a NUL in a value: removed and flagged
    )
    result = save_page(db, page, "s")
    adds_up(result)
    assert set(rows(db)) == {("X", "1"), ("ocds-v", "1")}
    assert json.loads(rows(db)[("ocds-v", "1")][0])["note"] == "ab"
    assert rows(db)[("ocds-v", "1")][2] == ["nul_removed"]
    assert sorted(r[0] for r in rejections(db)) == ["nul_in_identifier", "nul_in_identifier", "nul_key_collision"]
    assert {r[3] for r in rejections(db)} >= {"\\u0000", "X\\u0000"}


def test_a_lone_surrogate_rejects_its_release_only(db: Database) -> None:
    bad = release_text("ocds-s2", extra=',"t":"\\udc00x"')
    result = save_page(db, package_text(release_text("ocds-s1"), bad, release_text("ocds-s3")), "s")
    adds_up(result)
    assert (result.inserted, dict(result.rejected)) == (2, {"invalid_unicode": 1})
    assert rejections(db)[0][1] == bad


# --- 8: syntax errors ---------------------------------------------------------------------------------------


def test_everything_after_a_syntax_error_is_kept_however_long(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "REJECTED_PART_CHARS", 1000)
    tail = "x" * 3500
    text = package_text(release_text("ocds-e1"), release_text("ocds-e2"))[:-2] + ', {"ocid": oops ' + tail
    result = save_page(db, text, "s")
    adds_up(result)
    assert result.inserted == 2
    parts = rejections(db)
    assert all(r[0] == "invalid_json" for r in parts) and len(parts) == 4
    stored = db.run("SELECT string_agg(raw_text, '' ORDER BY position) FROM rejected_releases", "all")[0][0]
    assert text.endswith(stored) and stored.endswith(tail)


def test_json_lines_lose_only_the_bad_line(db: Database) -> None:
    lines = [release_text(f"ocds-l{i}") for i in range(6)]
    lines[2] = '{"ocid": "ocds-l2", "id": oops}'
    lines[4] = '{"ocid": "ocds-l4", "id": "1", "date": '  # truncated
    result = save_page(db, "\n".join(lines) + "\n", "s")
    adds_up(result)
    assert sorted(o for o, _ in rows(db)) == ["ocds-l0", "ocds-l1", "ocds-l3", "ocds-l5"]
    assert [r[1].rstrip("\n") for r in rejections(db)] == [lines[2], lines[4]]


# --- 9, 11: raw text and duplicate keys ---------------------------------------------------------------------


def test_rejected_releases_keep_their_published_text(db: Database) -> None:
    no_ocid = '{ "id" : "1",  "id": 2.50, "n": 1.000000000000000000001 }'
    deep = '{"ocid":"ocds-d","id":"1","date":"2020-01-01T00:00:00Z","x":' + "[" * 5000 + "]" * 5000 + "}"
    result = save_page(db, package_text(no_ocid, deep, release_text("ocds-ok")), "s")
    adds_up(result)
    quarantined = sorted((r[0], r[1]) for r in rejections(db))
    # How deep a parser goes depends on the Python version (3.13 reads 5,000 levels, 3.11 does not): the deep
    # release is stored as published or quarantined with its exact text, never anything else.
    if ("ocds-d", "1") in rows(db):
        assert quarantined == [("missing_ocid", no_ocid)]
        assert db.execute_once("SELECT data = CAST(:t AS jsonb) FROM releases WHERE ocid = 'ocds-d'", "check",
                               t=deep) == [[True]]
    else:
        assert quarantined == sorted([("missing_ocid", no_ocid), ("nesting_too_deep", deep)])


def test_duplicate_keys_keep_the_last_value_as_jsonb_does_and_are_flagged(db: Database) -> None:
    result = save_page(db, package_text(release_text("ocds-dup", extra=',"t":"first","t":"last"')), "s")
    assert result.inserted == 1
    data, _, flags, *_ = rows(db)[("ocds-dup", "1")]
    assert json.loads(data)["t"] == "last" and flags == ["duplicate_key"]


def test_a_body_that_is_not_json_is_recorded_whole(db: Database, lambda_env: None) -> None:
    response = invoke({"Records": [sqs_record("{this is not json", "m1")]})
    assert response == {"batchItemFailures": []}
    recorded = db.run("SELECT raw_text FROM rejected_releases UNION ALL SELECT body FROM rejected_messages", "r")
    assert recorded == [["{this is not json"]]


# --- 10: the message envelope -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    '{"ocid":"ocds-b","id":"1","date":"2020-01-01T00:00:00Z","x":' + "[" * 3000 + "]" * 3000 + "}",
    '{"ocid":"ocds-b","id":"1" "date":"2020-01-01T00:00:00Z"}',
    '{"ocid":"ocds-b","id":"1","date":"2020-01-01T00:00:00Z","n":1' + "0" * 5000 + "}",
    '{"ocid":"ocds-b","id":"1","date":"2020-01-01T00:00:00Z","t":"\\ud800"}',
])
def test_one_bad_release_in_an_envelope_keeps_its_neighbours_and_source(db: Database, lambda_env: None,
                                                                        bad: str) -> None:
    page = package_text(release_text("ocds-g1"), bad, release_text("ocds-g2"))
    body = '{"version":1,"source":"publisher-x","page":' + page + "}"
    response = invoke({"Records": [sqs_record(body, "m1")]})
    assert response == {"batchItemFailures": []}
    assert {("ocds-g1", "1"), ("ocds-g2", "1")} <= set(rows(db))
    assert db.run("SELECT DISTINCT source FROM releases", "r") == [["publisher-x"]]
    assert db.run("SELECT count(*) FROM rejected_messages", "r") == [[0]]


@pytest.mark.parametrize("source", ['"a\\u0000b"', '"a\\ud800"'])
def test_an_envelope_whose_source_cannot_be_text_is_recorded_not_failed(db: Database, lambda_env: None,
                                                                         source: str) -> None:
    body = '{"version":1,"source":' + source + ',"page":' + package_text(release_text("ocds-z")) + "}"
    response = invoke({"Records": [sqs_record(body, "m1")]})
    assert response == {"batchItemFailures": []}
    assert db.run("SELECT reason FROM rejected_messages", "r") == [["invalid_source"]]


# --- the invariants over generated hostile documents --------------------------------------------------------

_NUMBER = st.one_of(
    st.integers(min_value=-10**40, max_value=10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(lambda d: str(d)),
    st.sampled_from(["1e-400", "1E+400", "0.1000000000000000055511151231257827", "-0", "1e999"]),
)
_STRING = st.one_of(st.text(max_size=8).map(lambda s: json.dumps(s, ensure_ascii=False)),
                    st.sampled_from(['"\\u0000"', '"a\\u0000"', '"\\ud800"', '"\\udc00\\ud800"', '"\\u00e9"']))
_KEY = st.sampled_from(['"k"', '"k\\u0000"', '"\\u0000"', '"é"', '"ocid"', '"id"'])


@st.composite
def _hostile_release(draw: st.DrawFn, index: int) -> str:
    ocid = draw(st.sampled_from([json.dumps(f"ocds-{index}"), '"X"', '"X\\u0000"', "1", "null"]))
    release_id = draw(st.sampled_from(['"1"', "1", "1.0", "9007199254740993"]))
    date = draw(st.sampled_from(['"2020-01-01T00:00:00Z"', '"2021-02-30"', "5"]))
    members = [f'"ocid":{ocid}', f'"id":{release_id}', f'"date":{date}']
    for _ in range(draw(st.integers(0, 4))):
        members.append(f"{draw(_KEY)}:{draw(st.one_of(_NUMBER, _STRING))}")
    draw(st.randoms()).shuffle(members)
    text = "{" + ",".join(members) + "}"
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "junk", "deep"]))
    if damage == "cut":
        text = text[:draw(st.integers(1, len(text) - 1))]
    elif damage == "junk":
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(st.sampled_from(["@", ",", "]", '"', "}"])) + text[position:]
    elif damage == "deep":
        text = text[:-1] + ',"deep":' + "[" * 1200 + "]" * 1200 + "}"
    return text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), shape=st.sampled_from(["package", "lines", "envelope", "latin1", "truncated", "utf16"]))
def test_hostile_documents_are_accounted_for_release_by_release(db: Database, data: st.DataObject,
                                                                shape: str) -> None:
    db.run("TRUNCATE releases, rejected_releases, rejected_messages", "reset")
    releases = [data.draw(_hostile_release(i)) for i in range(data.draw(st.integers(1, 6)))]
    if shape == "lines":
        raw = ("\n".join(releases) + "\n").encode()
    else:
        raw = package_text(*releases).encode()
    if shape == "latin1":
        raw = raw.replace("é".encode(), b"\xe9")
    if shape == "truncated":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    if shape == "utf16":
        raw = raw.decode().encode("utf-16-le")[:data.draw(st.integers(len(raw), 2 * len(raw)))]
    if shape == "envelope":
        raw = b'{"version":1,"source":"s","page":' + raw + b"}"
        from ingest.messages import parse

        request = parse(raw.decode())
        page: str | bytes = request.page  # type: ignore[union-attr]
        published = documents.jsontext.text_of(request.page)  # type: ignore[union-attr] # bytes if it parsed
        result = save_page(db, page, request.source)
    else:
        page, published = raw, documents.decode(raw)[0]
        result = save_page(db, raw, "s")
    # THEN the summary adds up, and the tables hold every release read
    adds_up(result)
    stored = db.run("SELECT (SELECT count(*) FROM releases), (SELECT count(*) FROM rejected_releases)", "n")[0]
    assert stored[0] == result.inserted + result.updated
    assert stored[1] == result.rejected_total
    # AND every stored release is, as jsonb, a slice of the published document (NUL escapes removed)
    from ingest.releases import ReleaseRow, to_row

    found = [item for item in (documents.read_text(page) if isinstance(page, str) else documents.read_bytes(page))
             .items() if isinstance(item, documents.Found)]
    assert all(documents.jsontext.text_of(item.raw) in published for item in found)
    accepted = [row.data_text for item in found if isinstance(row := to_row(item, "s"), ReleaseRow)]
    assert db.execute_once("SELECT count(*) FROM releases WHERE NOT data = ANY(SELECT CAST(t AS jsonb) "
                           "FROM unnest(CAST(:texts AS text[])) t)", "check", texts=accepted or ["null"]) == [[0]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data(), envelope=st.booleans())
def test_the_worker_handler_never_fails_a_message_for_bad_data(db: Database, lambda_env: None,
                                                                data: st.DataObject, envelope: bool) -> None:
    releases = [data.draw(_hostile_release(i)) for i in range(data.draw(st.integers(1, 4)))]
    page = package_text(*releases)
    if data.draw(st.booleans()):
        page = page[:data.draw(st.integers(0, len(page)))]
    body = '{"version":1,"source":"s","page":' + page + "}" if envelope else page
    if not body.strip():
        body = "{"
    # WHEN the handler gets it THEN it is acknowledged: recorded in the tables, never sent back to the queue
    assert invoke({"Records": [sqs_record(body, "m1", source="s")]}) == {"batchItemFailures": []}
