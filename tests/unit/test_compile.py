"""ingest.compile against every normative merge output in ../shared/ocds-samples, and its exact JSON."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.compile import (
    MergeFailed,
    NotIncremental,
    compile_releases,
    dumps,
    extract,
    loads,
    merge_rules,
    ocid_schema_version,
    reference_compile,
    rules_of_schema,
    schema_version,
    versioned_release,
)
from tests.conftest import samples_dir


def load(path: Path) -> Any:
    return loads(path.read_text("utf-8"))


def fixture_cases(folder: str, version: str | None) -> list[Any]:
    """(name, input file, expected compiled or None, expected versioned or None, version) of a fixture folder."""
    try:
        root = samples_dir() / "ocds-merge-fixtures" / folder
    except pytest.skip.Exception:
        return [pytest.param(None, marks=pytest.mark.skip(reason="the shared OCDS samples are absent"))]
    cases = []
    for path in sorted(root.glob("*.json")):
        stem = path.stem
        if stem.endswith(("-compiled", "-versioned", "-append", "-by-position")):
            continue
        compiled = root / f"{stem}-compiled.json"
        versioned = root / f"{stem}-versioned.json"
        if not compiled.exists() and not versioned.exists():
            continue  # an input whose outputs need rule overrides: see the next test
        cases.append(pytest.param((path, compiled if compiled.exists() else None,
                                   versioned if versioned.exists() else None, version), id=f"{folder}/{stem}"))
    return cases


def _rules(version: str | None) -> dict[tuple[str, ...], str]:
    if version is None:  # schema/: the fixtures' own schema
        return rules_of_schema(json.loads((samples_dir() / "ocds-merge-fixtures" / "schema.json").read_text()))
    return merge_rules(version)


@pytest.mark.parametrize("case", fixture_cases("1.0", "1.0") + fixture_cases("1.1", "1.1")
                         + fixture_cases("schema", None))
def test_ocds_merge_fixtures(case: Any) -> None:
    path, compiled, versioned, version = case
    releases = load(path)
    rules = _rules(version)
    if compiled:
        assert compile_releases(releases, rules) == load(compiled)
    if versioned:
        assert versioned_release(releases, rules) == load(versioned)


@pytest.mark.parametrize(("stem", "strategy"), [("identifier-merge-duplicate-id", "append"),
                                                 ("identifier-merge-duplicate-id", "by-position"),
                                                 ("identifier-merge-no-id", "append")])
def test_ocds_merge_fixtures_with_rule_overrides(stem: str, strategy: str) -> None:
    from ocdsmerge import APPEND, MERGE_BY_POSITION

    root = samples_dir() / "ocds-merge-fixtures" / "schema"
    releases = load(root / f"{stem}.json")
    override = {("nested", "array"): APPEND if strategy == "append" else MERGE_BY_POSITION}
    assert compile_releases(releases + releases, _rules(None), overrides=override) == load(
        root / f"{stem}-{strategy}.json")


@pytest.mark.parametrize("number", [1, 2])
def test_ocdskit_golden_outputs(number: int) -> None:
    """ocdskit compile of release-package-N (CDMX, OCDS 1.0: no version field) -> compiled/versioned-release-N."""
    root = samples_dir() / "ocdskit-realdata"
    package = load(root / f"release-package-{number}.json")
    version = schema_version(package.get("version"))
    assert version == "1.0"
    releases = sorted(package["releases"], key=lambda release: release["date"])
    assert compile_releases(releases, merge_rules(version)) == load(root / f"compiled-release-{number}.json")
    assert versioned_release(releases, merge_rules(version)) == load(root / f"versioned-release-{number}.json")
    # With 1.1's rules the same releases give another result: the version's rules matter.
    assert compile_releases(releases, merge_rules("1.1")) != load(root / f"compiled-release-{number}.json")


def _releases(folder: Path, names: list[str]) -> list[dict[str, Any]]:
    return [release for name in names for release in load(folder / f"{name}.json")["releases"]]


@pytest.mark.parametrize(("names", "expected"), [
    (["tender1", "tender2", "tender3", "award1", "award2"], "updates/merged.json"),
    (["tender1", "tender2", "tender3", "award1", "award2"], "updates/versioned.json"),
    (["array_award", "array_awardAmendment"], "deletions/array_record.json"),
    (["field_tender", "field_tenderUpdate"], "deletions/field_record.json"),
    (["object_tender", "object_tenderAmendment"], "deletions/object_record.json"),
])
def test_standard_merging_examples(names: list[str], expected: str) -> None:
    root = samples_dir() / "standard-merging-examples"
    folder = root / expected.split("/")[0]
    releases = _releases(folder, names)
    record = load(root / expected)["records"][0]
    rules = merge_rules(schema_version(load(root / expected)["version"]))
    assert compile_releases(releases, rules) == record["compiledRelease"]
    if "versionedRelease" in record:
        assert versioned_release(releases, rules) == record["versionedRelease"]


def test_standard_embedded_releases_example_is_illustrative_not_a_merge_output() -> None:
    """embedded_releases.json's compiledRelease was written by hand for the documentation (its id is the last
    release's id, not "{ocid}-{date}"; a party's roles are doubled): what a merge gives differs, as ocdsmerge's
    does. This pins that difference, so a change of our merge there is seen."""
    record = load(samples_dir() / "standard-merging-examples" / "embedded_releases.json")["records"][0]
    releases = sorted(record["releases"], key=lambda release: release["date"])
    compiled = compile_releases(releases, merge_rules("1.1"))
    assert compiled["id"] == "ocds-213czf-000-00001-2011-01-10T09:30:00Z"
    assert record["compiledRelease"]["id"] == "ocds-213czf-000-00001-06-implementation"
    assert {key for key in compiled if compiled[key] != record["compiledRelease"].get(key)} == {
        "id", "parties", "tender"}


def test_versions_choose_the_shipped_schema() -> None:
    assert [schema_version(v) for v in (None, "1.0", "1.0.1", "1.1", "1.1.5", "1.2", "100.100.0")] == [
        "1.0", "1.0", "1.0", "1.1", "1.1", "1.1", "1.1"]
    assert ocid_schema_version([None, "1.0"]) == "1.0"
    assert ocid_schema_version([None, "1.1"]) == "1.1"
    # 1.0 versions the lists of tenderers and suppliers whole; 1.1 merges them by id.
    assert merge_rules("1.0")[("awards", "suppliers")] == "wholeListMerge"
    assert ("awards", "suppliers") not in merge_rules("1.1")


def test_exact_numbers_round_trip() -> None:
    huge = "7" * 5000  # int() refuses more than 4300 digits
    text = f'{{"a":12345678901234567890.123456789,"b":1e-400,"c":{huge},"d":[1,2.50,-3]}}'
    value = loads(text)
    assert value["a"] == Decimal("12345678901234567890.123456789")
    assert value["b"] == Decimal("1e-400")
    assert value["c"] == Decimal(huge)
    out = dumps(value)
    assert out == f'{{"a":12345678901234567890.123456789,"b":1E-400,"c":{huge},"d":[1,2.50,-3]}}'
    assert loads(out) == value


def test_exact_numbers_survive_a_merge() -> None:
    releases = [
        {"ocid": "o", "id": "1", "date": "2020-01-01T00:00:00Z", "tender": {"value": {"amount": loads(
            "12345678901234567890.123456789")}}},
        {"ocid": "o", "id": "2", "date": "2020-01-02T00:00:00Z", "awards": [{"id": "a", "value": {
            "amount": loads("1e-400")}}]},
    ]
    text = dumps(compile_releases(releases, merge_rules("1.1")))
    assert '"amount":12345678901234567890.123456789' in text
    assert '"amount":1E-400' in text


def test_dumps_keeps_text_and_refuses_what_is_not_json() -> None:
    assert dumps({"é": "\u2028\"\\", "n": None, "t": True}) == '{"é":"\u2028\\"\\\\","n":null,"t":true}'
    with pytest.raises((TypeError, ValueError)):
        dumps({"x": Decimal("NaN")})
    with pytest.raises((TypeError, ValueError)):
        dumps({"x": object()})


def test_extract_columns_and_totals() -> None:
    compiled = loads(json.dumps({
        "initiationType": "tender", "buyer": {"id": "B", "name": "Buyer"},
        "tender": {"id": "T", "title": "Roads", "status": "complete", "procurementMethod": "open",
                   "value": {"amount": 100.5, "currency": "USD"}},
        "awards": [{"id": "1", "value": {"amount": 10.25, "currency": "USD"}},
                   {"id": "2", "status": "cancelled", "value": {"amount": 99, "currency": "USD"}},
                   {"id": "3", "value": {"amount": 5, "currency": "USD"}}],
        "contracts": [{"id": "1", "value": {"amount": 1, "currency": "USD"}},
                      {"id": "2", "value": {"amount": 2, "currency": "EUR"}}],
    }))
    columns = extract(compiled)
    assert columns["buyer_id"] == "B" and columns["tender_title"] == "Roads"
    assert columns["value_amount"] == Decimal("100.5") and columns["value_currency"] == "USD"
    assert (columns["awards_count"], columns["awards_amount"], columns["awards_currency"]) == (
        3, Decimal("15.25"), "USD")
    # Two currencies have no single total.
    assert (columns["contracts_count"], columns["contracts_amount"], columns["contracts_currency"]) == (
        2, None, None)
    assert extract({})["awards_count"] == 0


_scalars = st.one_of(st.none(), st.text(max_size=3), st.integers(-5, 5))
_leaves = st.dictionaries(st.sampled_from(["title", "status", "description"]), _scalars, max_size=3)
_objects = st.one_of(_leaves, st.dictionaries(st.sampled_from(["value", "period", "x"]),
                                              st.one_of(_scalars, _leaves), max_size=2))
_release_bodies = st.fixed_dictionaries({}, optional={
    "tender": st.fixed_dictionaries({}, optional={
        "title": _scalars, "value": _objects, "items": st.lists(st.fixed_dictionaries(
            {"id": st.sampled_from(["1", "2"])}, optional={"description": _scalars, "unit": _objects}),
            max_size=2)}),
    "awards": st.lists(st.fixed_dictionaries({"id": st.sampled_from(["a", "b"])}, optional={
        "status": _scalars, "value": _objects, "suppliers": st.lists(st.fixed_dictionaries(
            {"id": st.sampled_from(["s", "t"])}, optional={"name": _scalars}), max_size=2)}), max_size=2),
    "buyer": _objects,
    "planning": _objects,
})


@settings(max_examples=150, deadline=None)
@given(st.lists(_release_bodies, min_size=2, max_size=5), st.integers(1, 4), st.sampled_from(["1.0", "1.1"]))
def test_merging_onto_a_compiled_release_equals_merging_all(bodies: list[dict[str, Any]], split: int,
                                                             version: str) -> None:
    """The incremental case: compiled(first k) + the rest, merged onto it == compiled(all), even where nulls
    leave empty objects behind."""
    releases = [{"ocid": "o", "id": str(n), "date": f"2020-01-0{n + 1}T00:00:00Z", **body}
                for n, body in enumerate(bodies)]
    split = min(split, len(releases) - 1)
    rules = merge_rules(version)
    try:
        whole: dict[str, Any] | None = loads(dumps(compile_releases(releases, rules)))
    except MergeFailed:  # a string, then an object at one path: refused
        whole = None
    try:
        # Through text, as the database stores it.
        head = loads(dumps(compile_releases(releases[:split], rules)))
    except MergeFailed:
        return  # nothing stored to merge onto: the store merges all of them
    try:
        onto = loads(dumps(compile_releases(releases[split:], rules, onto=head)))
    except NotIncremental:
        return  # the store merges all of them instead: that is ``whole``
    assert onto == whole


def test_a_path_that_is_a_value_and_an_object_is_merged_from_all_releases() -> None:
    # The reference meets /buyer/period first as a null, then as an object, then as a string, and refuses;
    # the stored compiled release of the first no longer holds the null, so merging onto it would not refuse.
    releases = [{"ocid": "o", "id": str(n), "date": f"2020-01-0{n + 1}T00:00:00Z", "buyer": {"period": period}}
                for n, period in enumerate([None, {"title": None}, ""])]
    rules = merge_rules("1.0")
    with pytest.raises(MergeFailed):
        compile_releases(releases, rules)
    head = loads(dumps(compile_releases(releases[:1], rules)))
    with pytest.raises(NotIncremental):
        compile_releases(releases[1:], rules, onto=head)


def test_a_release_that_nulls_an_object_is_still_merged_incrementally() -> None:
    releases = [{"ocid": "o", "id": str(n), "date": f"2020-01-0{n + 1}T00:00:00Z", "tender": {"value": value}}
                for n, value in enumerate([{"amount": 1, "currency": "USD"}, None, {"amount": 2}])]
    rules = merge_rules("1.1")
    head = loads(dumps(compile_releases(releases[:1], rules)))
    assert compile_releases(releases[1:], rules, onto=head) == compile_releases(releases, rules)


_values = st.one_of(st.none(), st.text(max_size=2), st.integers(-3, 3), st.just([]), st.just({}),
                    st.lists(st.text(max_size=1), max_size=2))
_ids = st.one_of(st.sampled_from(["1", "2", "None"]), st.integers(1, 2), st.none())


def _json_objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from(["id", "title", "value", "amount", "items", "awards", "suppliers", "tenderers",
                            "additionalIdentifiers", "date", "ocid", "tag", "x"])
    if depth == 0:
        return st.dictionaries(keys, _values, max_size=3)
    inner = _json_objects(depth - 1)
    with_ids = st.builds(lambda body, identifier, has: {**body, **({"id": identifier} if has else {})},
                         inner, _ids, st.booleans())
    return st.dictionaries(keys, st.one_of(_values, inner, st.lists(with_ids, max_size=3)), max_size=4)


@settings(max_examples=400, deadline=None)
@given(_json_objects(3), st.sampled_from(["1.0", "1.1"]))
def test_the_single_release_fast_path_equals_the_reference(body: dict[str, Any], version: str) -> None:
    release = {**body, "ocid": "o", "id": "1", "date": "2020-01-01T00:00:00Z"}  # as every stored release has
    rules = merge_rules(version)
    try:
        expected = reference_compile([release], rules)
    except (TypeError, AttributeError):  # e.g. an id that is a list: the reference refuses it, and so do we
        with pytest.raises(MergeFailed):
            compile_releases([release], rules)
        return
    assert compile_releases([release], rules) == expected


def test_the_single_release_fast_path_equals_the_reference_on_every_real_release() -> None:
    from ingest.pages import prepare_page

    root = samples_dir()
    count = 0
    for path in sorted(root.rglob("*.json")):
        prepared = prepare_page(path.read_bytes(), "samples")
        for row in prepared.rows:
            release = loads(row.data_text)
            for version in ("1.0", "1.1"):
                assert compile_releases([release], merge_rules(version)) == reference_compile(
                    [release], merge_rules(version)), (path, row.release_id)
            count += 1
    assert count > 800
