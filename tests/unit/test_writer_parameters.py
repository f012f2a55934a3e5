"""The unnest statement's parameters, built without a database: the data texts travel joined, unescaped."""

from __future__ import annotations

import json

import pytest

from ingest.pages import prepare_page
from ingest.store.writer import DATA_SEPARATOR, UPSERT_SQL, unnest_parameters

TEXTS = ['say "hello"', "C:\\path \\\\ \\u0041", "tab\there\nnewline", "ctl\x01\x1e\x1f escaped by JSON",
         "astral 😼 line\u2028separator", "x" * 5_000]


def test_each_release_text_travels_once_as_published_and_splits_back_exactly() -> None:
    # GIVEN rows whose texts hold quotes, backslashes and (escaped, as JSON requires) control characters
    releases = [{"ocid": f"ocds-{n}", "id": "1", "date": "2020-01-01T00:00:00Z", "note": text}
                for n, text in enumerate(TEXTS)]
    rows = prepare_page({"releases": releases}, "s").rows
    # WHEN the unnest parameters are built
    parameters = unnest_parameters(rows)
    # THEN the data parameter is the texts themselves joined by the separator, which none of them holds raw
    assert parameters["j"] == DATA_SEPARATOR.join(row.data_text for row in rows)
    assert parameters["j"].split(DATA_SEPARATOR) == [row.data_text for row in rows]
    assert [json.loads(text)["note"] for text in parameters["j"].split(DATA_SEPARATOR)] == TEXTS
    # AND every other column is still an array literal with one element per row
    assert parameters["o"] == "{" + ",".join(f'"ocds-{n}"' for n in range(len(TEXTS))) + "}"


@pytest.mark.parametrize("count", [0, 1])
def test_no_rows_and_one_row_give_the_same_number_of_pieces_as_rows(count: int) -> None:
    releases = [{"ocid": "ocds-a", "id": "1", "date": "2020-01-01T00:00:00Z"}][:count]
    parameters = unnest_parameters(prepare_page({"releases": releases}, "s").rows)
    # string_to_array('') is the empty array, so no rows is no pieces; one row is one piece
    assert parameters["j"].count(DATA_SEPARATOR) == 0
    assert (parameters["j"] == "") == (count == 0)
    assert "string_to_array(CAST(:j AS text), chr(30))" in UPSERT_SQL["unnest"]
