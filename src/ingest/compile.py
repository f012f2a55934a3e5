"""Releases of one ocid -> its compiled (or versioned) release, by the reference merge (pure; no I/O).

The merge is ``ocdsmerge``'s, with the rules of the OCDS release schema of the package's version, shipped in
``ingest/data/schema`` so that nothing is fetched at run time: 1.1 or 1.1.x -> 1.1.5; 1.0, 1.0.x, no ``version``
-> 1.0.3 (1.0 versions ``tenderers`` and ``suppliers`` as whole lists; 1.1 merges them by ``id``); any other
version -> 1.1.5, the newest rules we have. An ocid whose releases came in packages of both versions is merged by
1.1's rules (its publisher has moved on). Extensions' merge rules are not applied: they would have to be fetched.

Releases are merged in the order (date, release id, content hash): the date as parsed (offsets applied), then
the release id and the content hash (bytewise) so that releases of one date never depend on arrival order.

Numbers stay exact: JSON is parsed with ``loads`` (floats as ``Decimal``, integers of any length) and written with
``dumps`` (each number's exact digits), never through a Python float.

``ocdsmerge`` imports ``requests`` (~150 ms): it is imported inside the functions that merge, never at import.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext
from functools import cache
from importlib import resources
from typing import Any

from ingest.jsontext import column_text as _text
from ingest.jsontext import dumps, loads  # noqa: F401 (the exact JSON this module reads and writes)

SCHEMAS = {"1.1": "release-schema-1.1.5.json", "1.0": "release-schema-1.0.3.json"}
MergeRules = dict[tuple[str, ...], str]


def schema_version(package_version: str | None) -> str:
    """The merge rules ("1.1" or "1.0") for a package's ``version`` field."""
    if package_version is None or package_version == "1.0" or package_version.startswith("1.0."):
        return "1.0"
    return "1.1"


def ocid_schema_version(package_versions: Iterable[str | None]) -> str:
    """The rules for one ocid's releases: 1.1 if any came in a 1.1 (or unknown-version) package."""
    return "1.1" if any(schema_version(version) == "1.1" for version in package_versions) else "1.0"


@cache
def merge_rules(version: str) -> MergeRules:
    """The merge rules of the shipped schema of an OCDS version, derived once per process."""
    text = resources.files("ingest").joinpath(f"data/schema/{SCHEMAS[version]}").read_text("utf-8")
    return rules_of_schema(json.loads(text))


def rules_of_schema(schema: dict[str, Any]) -> MergeRules:
    """The merge rules of any release schema (a patched one, a test's)."""
    from ocdsmerge.rules import get_merge_rules

    return get_merge_rules(schema)


# --- exact JSON ---------------------------------------------------------------------------------------------

# --- merging ------------------------------------------------------------------------------------------------

_EMPTY = "\x00empty"


def _keep_empty_objects(value: Any, rules: MergeRules, path: tuple[str, ...] = ()) -> Any:
    """A compiled release made mergeable again without losing its empty objects.

    A compiled release can hold ``{}`` where every field of an object was set to null; ocdsmerge's flatten skips
    empty objects, so merging onto the compiled release would drop them where a merge of all releases keeps them.
    A null-valued placeholder key keeps the object's path; null values are never written out.
    """
    if isinstance(value, dict):
        if not value:
            return {_EMPTY: None}
        out = {}
        for key, item in value.items():
            item_path = (*path, key)
            rule = rules.get(item_path)
            out[key] = item if rule in ("wholeListMerge", "omitWhenMerged") else _keep_empty_objects(
                item, rules, item_path)
        return out
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [_keep_empty_objects(item, rules, path) for item in value]
    return value


class MergeFailed(Exception):
    """Raised if the reference merge refuses an ocid's releases (e.g. an object where an earlier release had a
    string, an ``id`` that is a list); the same releases always fail the same way."""


class NotIncremental(Exception):
    """Raised if merging onto a compiled release might not equal merging all the releases: among the paths
    merged, one is both a value (not null) and an object (or array). The reference resolves (or refuses) that by
    the order in which it first met each path, nulls included, which a stored compiled release no longer holds:
    merge them all."""


def _has_path_conflict(flattened: dict[tuple[Any, ...], Any]) -> bool:
    """Whether a path holds a value (not null) and is a proper prefix of another key: a value and an object at one
    path, which the reference settles by key order. A null there is skipped whatever the order, so a release
    that nulls an object does not cost a full merge."""
    return any(flattened.get(key[:end]) is not None for key in flattened for end in range(1, len(key)))


class _NotSimple(Exception):
    """Raised if a release has what only the reference merge resolves (repeated or non-string ids)."""


# The rules as a tree of field names, (rule, children): walking a release then costs one dict lookup per key
# instead of building its path's tuple (the single-release path spent most of its time doing that).
_RuleTree = dict[str, tuple[str | None, "_RuleTree"]]
_NO_RULES: _RuleTree = {}
_trees: dict[int, tuple[MergeRules, _RuleTree]] = {}  # by id(rules); the rules are kept so the id stays theirs


def _rule_tree(rules: MergeRules) -> _RuleTree:
    known = _trees.get(id(rules))
    if known is not None and known[0] is rules:
        return known[1]
    root: dict[str, list[Any]] = {}
    for path, rule in rules.items():
        node = root
        for name in path[:-1]:
            node = node.setdefault(name, [None, {}])[1]
        node.setdefault(path[-1], [None, {}])[0] = rule

    def frozen(node: dict[str, list[Any]]) -> _RuleTree:
        return {name: (rule, frozen(children)) for name, (rule, children) in node.items()}

    tree = frozen(root)
    _trees[id(rules)] = (rules, tree)
    return tree


def _clean(obj: dict[str, Any], tree: _RuleTree) -> dict[str, Any] | None:
    """One object as ocdsmerge's flatten + unflatten leave it, or None if nothing of it survives."""
    out: dict[str, Any] = {}
    touched = False
    for key, value in obj.items():
        rule, children = tree.get(key) or (None, _NO_RULES)
        if rule == "omitWhenMerged":
            continue
        if rule == "wholeListMerge" or not isinstance(value, (dict, list)) or (
                type(value) is list and any(not isinstance(item, dict) for item in value)):
            touched = True  # a null still creates the objects above it
            if value is not None:
                out[key] = value
        elif type(value) is dict:
            if value and (cleaned := _clean(value, children)) is not None:
                out[key], touched = cleaned, True
        elif value:
            ids = [item["id"] for item in value if "id" in item]
            if any(type(identifier) is not str or identifier == "None" for identifier in ids) or len(
                    set(ids)) != len(ids):
                raise _NotSimple
            items = [cleaned for item in value if (cleaned := _clean(item, children)) is not None]
            if items:
                out[key], touched = items, True
    return out if touched else None


def _compile_one(release: dict[str, Any], rules: MergeRules) -> dict[str, Any]:
    """The compiled release of a single release: what ``CompiledRelease`` gives, without flattening (most ocids
    have one release; this is 5-10 times faster). Property-tested equal to the reference; a release with repeated
    or non-string ids in a merged array raises ``_NotSimple`` and goes to the reference."""
    ocid, date = release.get("ocid"), release.get("date")
    if type(ocid) is not str or type(date) is not str:  # stored releases always have both as strings
        raise _NotSimple
    body = {key: value for key, value in release.items() if key != "tag"}
    compiled = _clean(body, _rule_tree(rules)) or {}
    compiled.update(tag=["compiled"], id=f"{ocid}-{date}", date=date, ocid=ocid)
    return compiled


def compile_releases(releases: Sequence[dict[str, Any]], rules: MergeRules, *,
                     onto: dict[str, Any] | None = None, overrides: dict[Any, Any] | None = None) -> dict[str, Any]:
    """The compiled release of ``releases``, given in merge order, optionally merged onto an earlier compiled
    release of the same ocid (``onto``): the incremental case, equal to merging all releases from scratch, or
    ``NotIncremental`` where it might not be (then the caller merges all of them)."""
    if len(releases) == 1 and onto is None and not overrides:
        try:
            return _compile_one(releases[0], rules)
        except _NotSimple:
            pass
    from ocdsmerge.exceptions import OCDSMergeError

    try:
        return reference_compile(releases, rules, onto=onto, overrides=overrides)
    except (OCDSMergeError, TypeError, AttributeError) as error:
        if onto is not None:  # whether all of them fail too is for the merge of all of them to say
            raise NotIncremental(str(error)) from error
        raise MergeFailed(f"{type(error).__name__}: {error}") from error


def reference_compile(releases: Sequence[dict[str, Any]], rules: MergeRules, *,
                      onto: dict[str, Any] | None = None, overrides: dict[Any, Any] | None = None) -> dict[str, Any]:
    """``compile_releases`` by ocdsmerge alone."""
    from ocdsmerge.exceptions import DuplicateIdValueWarning
    from ocdsmerge.merge import CompiledRelease

    data = _keep_empty_objects(onto, rules) if onto is not None else None
    merged = CompiledRelease(data, merge_rules=rules, rule_overrides=overrides or {})
    with warnings.catch_warnings():
        # Two objects with one id in an array are merged into one, as the standard says; not our error to raise.
        warnings.simplefilter("ignore", DuplicateIdValueWarning)
        for release in releases:
            merged.append(release)
    if onto is not None and _has_path_conflict(merged.data):
        raise NotIncremental("a path is both a value and an object among the releases")
    return merged.asdict()


def versioned_release(releases: Sequence[dict[str, Any]], rules: MergeRules) -> dict[str, Any]:
    """The versioned release (every value with the releases that set it) of ``releases`` in merge order."""
    from ocdsmerge.exceptions import DuplicateIdValueWarning
    from ocdsmerge.merge import VersionedRelease

    merged = VersionedRelease(merge_rules=rules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateIdValueWarning)
        for release in releases:
            merged.append(release)
    return merged.asdict()


# --- extracted columns --------------------------------------------------------------------------------------

def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _amount(value: Any) -> Decimal | int | None:
    return value if isinstance(value, (int, Decimal)) and not isinstance(value, bool) else None


def _total(items: Any, excluded_statuses: frozenset[str]) -> tuple[int, Decimal | int | None, str | None]:
    """(count, total, currency) of awards or contracts; the total only when every counted value has one
    currency, and without those cancelled or unsuccessful (what an analyst means by "the value awarded")."""
    objects = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    amounts: list[Decimal | int] = []
    currencies: set[str | None] = set()
    for item in objects:
        if item.get("status") in excluded_statuses:
            continue
        value = _object(item.get("value"))
        amount = _amount(value.get("amount"))
        if amount is not None:
            amounts.append(amount)
            currencies.add(_text(value.get("currency")))
    if not amounts or len(currencies) != 1:
        return len(objects), None, None
    with localcontext(_EXACT):
        return len(objects), sum(amounts, Decimal(0)), currencies.pop()


# Sums of Decimals without rounding (the default context keeps 28 digits).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def extract(compiled: dict[str, Any]) -> dict[str, Any]:
    """The columns people filter on, from a compiled release (the same as ``releases``' plus totals)."""
    buyer = _object(compiled.get("buyer"))
    tender = _object(compiled.get("tender"))
    value = _object(tender.get("value"))
    awards = _total(compiled.get("awards"), frozenset({"cancelled", "unsuccessful"}))
    contracts = _total(compiled.get("contracts"), frozenset({"cancelled"}))
    return {
        "initiation_type": _text(compiled.get("initiationType")),
        "buyer_id": _text(buyer.get("id")),
        "buyer_name": _text(buyer.get("name")),
        "tender_id": _text(tender.get("id")),
        "tender_title": _text(tender.get("title")),
        "tender_status": _text(tender.get("status")),
        "procurement_method": _text(tender.get("procurementMethod")),
        "value_amount": _amount(value.get("amount")),
        "value_currency": _text(value.get("currency")),
        "awards_count": awards[0],
        "awards_amount": awards[1],
        "awards_currency": awards[2],
        "contracts_count": contracts[0],
        "contracts_amount": contracts[1],
        "contracts_currency": contracts[2],
    }
