"""The unnest statement's parameters, built without a database: each column's values travel joined, unescaped,
and as array literals only on a page whose values would make the join ambiguous."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.pages import prepare_page
from ingest.store.connection import Utf8Text
from ingest.store.writer import (
    _RELEASE_COLUMNS,
    DATA_SEPARATOR,
    NULL_FIELD,
    UPSERT_SQL,
    _list_literal,
    _row_values,
    array_literal,
    unnest_parameters,
)

TEXTS = ['say "hello"', "C:\\path \\\\ \\u0041", "tab\there\nnewline", "ctl\x01\x1e\x1f escaped by JSON",
         "astral 😼 line\u2028separator", "x" * 5_000]


def string_to_array(text: str, null: str | None = NULL_FIELD) -> list[str | None]:
    """PostgreSQL's string_to_array(text, chr(30), chr(31)), as the statement calls it."""
    return [] if text == "" else [None if null is not None and piece == null else piece
                                   for piece in text.split(DATA_SEPARATOR)]


def text(parameter: str | Utf8Text) -> str:
    return parameter.utf8.decode("utf-8") if isinstance(parameter, Utf8Text) else parameter


def page(*buyers: str | None) -> list:
    return prepare_page({"releases": [
        {"ocid": f"ocds-{n}", "id": "1", "date": "2020-01-01T00:00:00Z",
         **({} if name is None else {"buyer": {"name": name}})} for n, name in enumerate(buyers)]}, "s").rows


def test_each_release_text_travels_once_as_published_and_splits_back_exactly() -> None:
    # GIVEN rows whose texts hold quotes, backslashes and (escaped, as JSON requires) control characters
    releases = [{"ocid": f"ocds-{n}", "id": "1", "date": "2020-01-01T00:00:00Z", "note": text}
                for n, text in enumerate(TEXTS)]
    rows = prepare_page({"releases": releases}, "s").rows
    # WHEN the unnest parameters are built
    parameters = unnest_parameters(rows)
    # THEN the data parameter is the texts themselves, in the UTF-8 reading kept, joined by the separator, which
    # none of them holds raw
    data = parameters["j"]
    assert isinstance(data, Utf8Text)
    assert data.utf8 == DATA_SEPARATOR.join(row.data_text for row in rows).encode("utf-8")
    assert string_to_array(data.utf8.decode("utf-8"), None) == [row.data_text for row in rows]
    assert [json.loads(text)["note"] for text in data.utf8.decode("utf-8").split(DATA_SEPARATOR)] == TEXTS
    # AND every other column is joined the same way, unescaped
    assert parameters["literal"] == "false"
    assert parameters["o"] == DATA_SEPARATOR.join(f"ocds-{n}" for n in range(len(TEXTS)))


@given(st.lists(st.one_of(st.none(), st.sampled_from(["", DATA_SEPARATOR, NULL_FIELD, "a" + NULL_FIELD]),
                          st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))),
                min_size=1, max_size=6))
def test_a_joined_column_always_splits_back_into_its_values(names: list[str | None]) -> None:
    rows = page(*names)
    parameters = unnest_parameters(rows)
    if parameters["literal"] == "false":
        assert string_to_array(parameters["bn"]) == names
        assert string_to_array(parameters["o"]) == [f"ocds-{n}" for n in range(len(names))]
        # every column, as the copy strategy writes each row's values
        by_row = list(zip(*(string_to_array(parameters[key]) for _, key, _ in _RELEASE_COLUMNS[:-1]), strict=True))
        assert by_row == [_row_values(row)[:-1] for row in rows]
    else:  # only a page that cannot be joined unambiguously travels as array literals
        assert any(name is not None and (DATA_SEPARATOR in name or NULL_FIELD in name) for name in names) or \
            names == [""]
        assert parameters["bn"].startswith("{") and parameters["o"].startswith("{")


@pytest.mark.parametrize("names", [[""], ["a", "b\x1ec"], ["a\x1f", None], [NULL_FIELD]])
def test_values_the_join_would_lose_send_the_page_as_array_literals(names: list[str | None]) -> None:
    parameters = unnest_parameters(page(*names))
    assert parameters["literal"] == "true"
    assert parameters["o"] == "{" + ",".join(f'"ocds-{n}"' for n in range(len(names))) + "}"


@pytest.mark.parametrize("count", [0, 1])
def test_no_rows_and_one_row_give_the_same_number_of_pieces_as_rows(count: int) -> None:
    parameters = unnest_parameters(page(*["x"][:count]))
    # string_to_array('') is the empty array, so no rows is no pieces; one row is one piece
    assert parameters["literal"] == "false"
    assert [len(string_to_array(text(parameters[key]))) for key in ("j", "o", "bn")] == [count] * 3
    assert "string_to_array(CAST(:j AS text), chr(30))" in UPSERT_SQL["unnest"]
    assert "string_to_array(CAST(:o AS text), chr(30), chr(31))" in UPSERT_SQL["unnest"]


def test_the_data_column_sends_each_rows_bytes_as_read_and_a_changed_row_its_new_bytes() -> None:
    # GIVEN rows as reading builds them, texts that are not ASCII among them
    rows = prepare_page({"releases": [{"ocid": "ocds-é", "id": "1", "date": "2020-01-01T00:00:00Z", "x": "ü😼"},
                                      {"ocid": "ocds-2", "id": "1", "date": "2020-01-01T00:00:00Z"}]}, "s").rows
    # THEN the data column is their UTF-8 as read, joined
    accented = next(row for row in rows if row.ocid == "ocds-é")
    assert accented.data == '{"ocid":"ocds-é","id":"1","date":"2020-01-01T00:00:00Z","x":"ü😼"}'.encode()
    assert text(unnest_parameters(rows)["j"]) == DATA_SEPARATOR.join(row.data_text for row in rows)
    # AND a row made from another with new bytes sends those
    changed = replace(accented, data=accented.data.replace("ü".encode(), b"u"))
    assert text(unnest_parameters([changed])["j"]) == changed.data_text == accented.data_text.replace("ü", "u")


@pytest.mark.parametrize(("date", "sent"), [
    ("2020-01-01T10:00:00Z", "2020-01-01T10:00:00Z"),
    ("2020-01-01T10:00:00z", "2020-01-01T10:00:00+00:00"),
    ("2020-01-01T12:00:00+02:00", "2020-01-01T10:00:00+00:00"),
    ("2020-01-01T10:00:00.5Z", "2020-01-01T10:00:00.500000+00:00"),
    ("2020-01-01", "2020-01-01T00:00:00+00:00"),
    ("\u0662\u0660\u0662\u0660-01-01T10:00:00Z", "2020-01-01T10:00:00+00:00"),  # digits PostgreSQL does not read
])
def test_a_usual_date_is_sent_as_published_and_any_other_as_its_instant_written_out(date: str, sent: str) -> None:
    rows = prepare_page({"releases": [{"ocid": "ocds-1", "id": "1", "date": date}]}, "s").rows
    assert unnest_parameters(rows)["d"] == sent
    assert _row_values(rows[0])[2] == sent


@given(st.lists(st.one_of(st.sampled_from(["tender", 'a "quoted" word', "back\\slash", "", "NULL", "{}", ","]),
                          st.text())))
def test_a_list_literal_is_the_array_literal_of_its_texts(values: list[str]) -> None:
    assert _list_literal(values) == array_literal(values)
    assert _list_literal(None) is None


@pytest.mark.parametrize("encoding", ["utf8", "UTF-8", "utf_8", "latin-1", "euc_jp"])
def test_utf8_text_is_sent_in_the_connections_client_encoding(encoding: str) -> None:
    parameter = Utf8Text("café ü".encode())
    assert parameter.encode(encoding) == "café ü".encode(encoding)
