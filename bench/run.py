"""Benchmark: the engine (``save_page``) against the seed's inserts and PostgreSQL's physical limit.

Run ``make bench`` (or ``.venv/bin/python bench/run.py [--quick]``). It starts a throwaway PostgreSQL with the
default durability (fsync on, synchronous commit), generates synthetic OCDS releases of about 4 KB and 20 KB
(seeded, so every run loads the same data) and loads them, into an empty table each time, with:

* ``seed per-row``: one INSERT ... ON CONFLICT DO UPDATE and one COMMIT per release (what the seed did);
* ``seed VALUES x100``: multi-row INSERT ... VALUES with 100 rows per statement, one transaction per page;
* ``engine (save_page)``: the library's entry point, one page per call, into the real ``releases`` table;
* ``engine [unnest]``, ``engine [copy]``: the engine with its other write strategies (``--strategies``);
* ``engine, replay``, ``engine [unnest], replay``: the same pages again (every release unchanged);
* ``raw COPY``: COPY of the same columns into an UNLOGGED table without any index (the physical limit).

Each strategy is timed end to end, from the list of release dicts to committed rows (serialisation included),
through a ``LatencyProxy`` that counts round trips on the wire; then again with 1 ms of round-trip latency.
Besides the table it prints where the time goes (client CPU, server CPU, WAL) and writes bench/results.json.

Then the worker Lambda (bench/worker_bench.py, bench/worker_probe.py):

* ``worker [json]``, ``worker [unnest]``: ``handler.worker.lambda_handler`` invoked in-process with Lambda SQS
  events of inline pages (release packages of the same 4 KB releases, 200 per message, 5 records per event),
  timed from the event dicts to committed rows, through the proxy at 0 and 1 ms, against raw COPY of the same
  releases in pages of the same size;
* its memory: the peak RSS one full invocation (5 records of ~950 KB) adds to a warm worker, in a fresh
  interpreter, and where the memory goes (tracemalloc, in another fresh interpreter);
* its cold import: ``import handler.worker`` against the libraries it needs, in fresh interpreters.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.pages import PageResult, save_page
from ingest.store import writer
from ingest.store.connection import Database, connect_url
from ingest.store.local_server import LocalServer, start
from ingest.store.migrate import migrate
from ingest.tcp_proxy import LatencyProxy

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench/worker_bench.py, also when this file is run some other way
    sys.path.insert(0, str(HERE))
import compile_bench  # noqa: E402
import politeness_bench  # noqa: E402
import worker_bench  # noqa: E402

SOURCE = "bench"
SEED = 20_240_601
ONE_MS = 0.001
TARGET_VS_COPY = 0.60
TARGET_ROUND_TRIPS = 4
TARGET_LATENCY = 0.85
# The engine's write strategies (``save_page(..., strategy=)``); the default one is "engine (save_page)".
DEFAULT_STRATEGY: str = getattr(writer, "DEFAULT_STRATEGY", "json")
STRATEGIES: tuple[str, ...] = tuple(getattr(writer, "STRATEGIES", (DEFAULT_STRATEGY,)))

# --- synthetic OCDS releases --------------------------------------------------------------------------------

_WORDS = (
    "supply delivery maintenance framework agreement services works construction road bridge school "
    "hospital medical equipment software licences support cleaning catering security transport vehicles "
    "fuel electricity "
    "water sanitation consultancy audit training furniture stationery printing laboratory reagents vaccines "
    "pharmaceuticals repair renovation building design supervision installation network cabling servers "
    "computers laptops telecommunications insurance legal advisory waste collection recycling landscaping "
    "lighting heating ventilation air conditioning lifts fire alarms uniforms textiles food provisions "
    "municipal regional national public authority council department ministry agency district county "
    "contract lot tender procurement notice award amendment annex specification requirement criteria quality "
    "price technical evaluation submission deadline clarification bidder supplier contractor subcontractor "
    "the of and for to in with on by from under within including excluding according provided required "
    "adquisición suministro construcción señalización mantenimiento médico educación licitación obras "
    "contratação manutenção serviços públicos região município aquisição gestão Straßenbau Müllabfuhr "
    "ÖPNV Gebäudereinigung café élève réseau sécurité"
).split()
_TOWNS = ("Asunción", "Lisboa", "Ciudad de México", "Manchester", "Bristol", "Porto", "Encarnación", "Leeds",
          "Coimbra", "Guadalajara", "Monterrey", "Cardiff", "Glasgow", "Braga", "Puebla", "Köln", "São Paulo")
_BODIES = ("City Council", "Health Board", "Ministry of Public Works", "Water Authority", "University",
           "Police Service", "Housing Association", "Transport Agency", "Education Department",
           "Hospital Trust")
_CURRENCIES = ("GBP", "EUR", "USD", "PYG", "MXN", "BRL")
_UNITS = ("unit", "hour", "day", "month", "kilogram", "litre", "metre", "lot", "licence", "visit")
_DOCUMENT_TYPES = ("tenderNotice", "biddingDocuments", "technicalSpecifications", "evaluationCriteria",
                   "clarifications", "contractDraft", "eligibilityCriteria", "billOfQuantity",
                   "riskProvisions")
_FORMATS = ("application/pdf", "application/pdf", "text/html",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
_BASE_DATE = datetime(2020, 1, 1, tzinfo=UTC)
_FOUR_YEARS = 4 * 365 * 86_400


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_size(value: Any) -> int:
    """Bytes of compact UTF-8 JSON: what a release weighs on the wire and in the table."""
    return len(_compact(value).encode("utf-8"))


class ReleaseFactory:
    """Deterministic, realistic-looking releases: same seed, same releases, on any machine."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _sentence(self, low: int, high: int) -> str:
        words = self.rng.choices(_WORDS, k=self.rng.randint(low, high))
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def _date(self, base: datetime | None = None, spread: int = _FOUR_YEARS) -> str:
        moment = (base or _BASE_DATE) + timedelta(seconds=self.rng.randrange(spread))
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _amount(self, low: float, high: float) -> float | int:
        amount = round(self.rng.uniform(low, high), 2)
        return int(amount) if self.rng.random() < 0.3 else amount

    def _item(self, number: int, currency: str) -> dict[str, Any]:
        rng = self.rng
        return {
            "id": str(number),
            "description": self._sentence(6, 24),
            "classification": {"scheme": "CPV", "id": f"{rng.randrange(3_000_000, 98_000_000):08d}",
                               "description": self._sentence(2, 6)},
            "quantity": rng.randint(1, 500),
            "unit": {"name": rng.choice(_UNITS),
                     "value": {"amount": self._amount(1, 20_000), "currency": currency}},
            "deliveryAddresses": [{"region": f"{rng.choice('ABCDEFGHJKLMN')}{rng.randint(1, 99):02d}"}],
        }

    def _document(self, ocid: str, number: int, published: str) -> dict[str, Any]:
        rng = self.rng
        return {
            "id": f"{ocid}-doc-{number}",
            "documentType": rng.choice(_DOCUMENT_TYPES),
            "title": self._sentence(3, 9),
            "description": self._sentence(8, 30),
            "url": f"https://tenders.example.org/notices/{ocid}/documents/{number}?format=pdf&lang=en",
            "datePublished": published,
            "format": rng.choice(_FORMATS),
            "language": rng.choice(("en", "es", "pt")),
        }

    def _party(self, ocid: str, number: int, roles: list[str]) -> dict[str, Any]:
        rng = self.rng
        town = rng.choice(_TOWNS)
        name = f"{town} {rng.choice(_BODIES)}" if "buyer" in roles else f"{self._sentence(1, 3)[:-1]} Ltd"
        return {
            "id": f"XX-BENCH-{rng.randrange(1, 20_000):06d}",
            "name": name,
            "identifier": {"scheme": "XX-BENCH", "id": f"{rng.randrange(10**7, 10**8)}",
                           "legalName": self._sentence(2, 5)[:-1]},
            "address": {"streetAddress": f"{rng.randint(1, 400)} {self._sentence(1, 3)[:-1]} Street",
                        "locality": town, "postalCode": f"{rng.randint(1000, 99999)}",
                        "countryName": "Benchland"},
            "contactPoint": {"name": self._sentence(2, 3)[:-1], "email": f"procurement{number}@example.org",
                             "telephone": f"+44 {rng.randint(1000, 9999)} {rng.randint(100000, 999999)}"},
            "roles": roles,
        }

    def release(self, number: int, target_bytes: int) -> dict[str, Any]:
        """A tender release of about ``target_bytes`` (+-20%: real ones vary), padded with items and documents."""
        rng = self.rng
        ocid = f"ocds-bench-{number}"
        currency = rng.choice(_CURRENCIES)
        date = self._date()
        end_date = self._date(datetime.fromisoformat(date[:-1] + "+00:00"), 60 * 86_400)
        buyer = self._party(ocid, number, ["buyer", "procuringEntity"])
        release: dict[str, Any] = {
            "ocid": ocid,
            "id": f"{ocid}-tender-{rng.randint(1, 3)}",
            "date": date,
            "tag": ["tender"],
            "initiationType": "tender",
            "language": "en",
            "buyer": {"id": buyer["id"], "name": buyer["name"]},
            "tender": {
                "id": f"{ocid}-tender",
                "title": self._sentence(4, 12),
                "description": self._sentence(15, 50),
                "status": rng.choice(("planned", "active", "active", "active", "complete", "cancelled")),
                "procurementMethod": rng.choice(("open", "open", "open", "selective", "limited", "direct")),
                "procurementMethodDetails": self._sentence(2, 5)[:-1],
                "mainProcurementCategory": rng.choice(("goods", "works", "services")),
                "value": {"amount": self._amount(1_000, 5_000_000), "currency": currency},
                "tenderPeriod": {"startDate": date, "endDate": end_date},
                "items": [],
                "documents": [],
            },
            "parties": [buyer] + [self._party(ocid, number, ["tenderer"]) for _ in range(rng.randint(0, 2))],
        }
        target = int(target_bytes * rng.uniform(0.8, 1.2))
        size = json_size(release)
        tender = release["tender"]
        while True:
            if len(tender["items"]) <= len(tender["documents"]):
                kind, element = "items", self._item(len(tender["items"]) + 1, currency)
            else:
                kind, element = "documents", self._document(ocid, len(tender["documents"]) + 1, date)
            grows = json_size(element) + (1 if tender[kind] else 0)
            if size + grows / 2 > target and tender["items"]:
                return release
            tender[kind].append(element)
            size += grows


def generate(count: int, target_bytes: int, first_number: int, seed: int) -> list[dict[str, Any]]:
    factory = ReleaseFactory(seed)
    return [factory.release(first_number + index, target_bytes) for index in range(count)]


def paginate(releases: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [releases[start:start + size] for start in range(0, len(releases), size)]


# --- row builders for the baselines -------------------------------------------------------------------------


def _dumps(release: dict[str, Any]) -> str:
    return json.dumps(release, ensure_ascii=False, separators=(",", ":"))


def seed_values(release: dict[str, Any]) -> tuple[str, str, str, str]:
    """(ocid, release_id, release_date, data): the seed's columns, data serialised here."""
    return release["ocid"], str(release["id"]), release["date"], _dumps(release)


def _copy_escape(text: str) -> str:
    """COPY text format: backslash, tab, newline and carriage return escaped (JSON text never holds a NUL)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _copy_escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    return _copy_escape(str(value))


def _array_literal(values: list[str] | None) -> str | None:
    if values is None:
        return None
    return "{" + ",".join('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in values) + "}"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


RAW_COLUMNS = ("ocid", "release_id", "release_date", "date_text", "tag", "initiation_type", "buyer_id",
               "buyer_name", "tender_title", "tender_status", "procurement_method", "value_amount",
               "value_currency", "publisher_name", "package_uri", "ocds_version", "source", "content_hash",
               "data")


def copy_line(release: dict[str, Any]) -> str:
    """One line of COPY text for ``raw_releases``: the same columns the engine writes (minus the defaults)."""
    data = _dumps(release)
    tender = release.get("tender") or {}
    value = tender.get("value") or {}
    buyer = release.get("buyer") or {}
    amount = value.get("amount")
    tag = release.get("tag")
    return "\t".join(map(_copy_field, (
        release["ocid"], str(release["id"]), release["date"], release["date"],
        _array_literal(tag if isinstance(tag, list) else None), _text_or_none(release.get("initiationType")),
        _text_or_none(buyer.get("id")), _text_or_none(buyer.get("name")), _text_or_none(tender.get("title")),
        _text_or_none(tender.get("status")), _text_or_none(tender.get("procurementMethod")),
        repr(amount) if isinstance(amount, (int, float)) else None, _text_or_none(value.get("currency")),
        None, None, None, SOURCE, "\\x" + hashlib.sha256(data.encode("utf-8")).hexdigest(), data,
    )))


# --- the server, timing and resource accounting -------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu(pid: int) -> float:
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster, its live children and the children it has reaped."""
    stat = _proc_stat(postmaster)
    total = sum(int(value) for value in stat[11:15]) / _TICKS if stat else 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[1] == str(postmaster):
                total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


@dataclass
class Run:
    """One strategy on one release size at one latency."""

    strategy: str
    size: str
    delay_ms: float
    releases: int
    page_size: int
    pages: int
    seconds: float
    mean_bytes: int
    wire_round_trips: int | None = None
    self_round_trips: int | None = None
    client_cpu: float = 0.0
    proxy_cpu: float = 0.0
    backend_cpu: float = 0.0
    other_server_cpu: float = 0.0
    wal_bytes: int = 0
    rows_after: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    all_seconds: list[float] = field(default_factory=list)  # every repetition; the fastest one is reported

    @property
    def rate(self) -> float:
        return self.releases / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.rate * self.mean_bytes / 1e6

    @property
    def wire_per_page(self) -> float | None:
        # Per-row strategies run on fewer releases: per page means per ``page_size`` releases.
        if self.wire_round_trips is None:
            return None
        return self.wire_round_trips / (self.releases / self.page_size)

    @property
    def wire_per_message(self) -> float | None:
        """Round trips per page actually sent (the worker: per message, a short last one included)."""
        return None if self.wire_round_trips is None or not self.pages else self.wire_round_trips / self.pages

    @property
    def self_per_message(self) -> float | None:
        return None if self.self_round_trips is None or not self.pages else self.self_round_trips / self.pages

    @property
    def self_per_page(self) -> float | None:
        if self.self_round_trips is None:
            return None
        return self.self_round_trips / (self.releases / self.page_size)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(rate=round(self.rate, 1), mb_per_second=round(self.mb_per_second, 2),
                    wire_round_trips_per_page=_round(self.wire_per_page),
                    self_round_trips_per_page=_round(self.self_per_page))
        for key in ("seconds", "client_cpu", "proxy_cpu", "backend_cpu", "other_server_cpu"):
            data[key] = round(data[key], 4)
        return data


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class Bench:
    """The server, one database per release size, and the timed runs."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.admin = connect_url(server.url)
        self.postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        self.dbs: dict[str, Database] = {}

    def create_database(self, name: str) -> None:
        self.admin.run(f"DROP DATABASE IF EXISTS {name}", "bench")
        self.admin.run(f"CREATE DATABASE {name}", "bench")
        db = connect_url(self.server.url_for(name))
        migrate(db)
        db.run("CREATE TABLE seed_releases (ocid text NOT NULL, release_id text NOT NULL, "
               "release_date timestamptz NOT NULL, data jsonb NOT NULL, PRIMARY KEY (ocid, release_id))",
               "bench")
        columns = db.run("SELECT column_name, data_type, udt_name FROM information_schema.columns "
                         "WHERE table_name = 'releases' AND column_default IS NULL ORDER BY ordinal_position",
                         "bench")
        names = tuple(column[0] for column in columns)
        assert names == RAW_COLUMNS, f"releases has changed: {names}"
        definitions = ", ".join(f"{column} {'text[]' if udt == '_text' else kind}"
                                for column, kind, udt in columns)
        db.run(f"CREATE UNLOGGED TABLE raw_releases ({definitions})", "bench")
        self.dbs[name] = db

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self.admin.close()

    def reset(self, database: str, table: str) -> None:
        """An empty table and a clean checkpoint, so no run pays for the previous one's dirty buffers."""
        db = self.dbs[database]
        db.run(f"TRUNCATE {table}", "bench")
        db.run("CHECKPOINT", "bench")

    def count(self, database: str, table: str) -> int:
        return int(self.dbs[database].run(f"SELECT count(*) FROM {table}", "bench")[0][0])

    def wal_lsn(self) -> int:
        text = self.admin.run("SELECT pg_current_wal_insert_lsn()::text", "bench")[0][0]
        high, low = text.split("/")
        return (int(high, 16) << 32) + int(low, 16)

    @contextmanager
    def connection(self, database: str,
                   delay: float | None) -> Iterator[tuple[Database, LatencyProxy | None]]:
        """A connection through a LatencyProxy (``delay`` s per round trip), or direct if ``delay`` is None."""
        if delay is None:
            db = connect_url(self.server.url_for(database))
            try:
                yield db, None
            finally:
                db.close()
            return
        with LatencyProxy("127.0.0.1", self.server.port, delay_seconds=delay) as proxy:
            db = connect_url(f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}")
            try:
                yield db, proxy
            finally:
                db.close()

    def round_trip(self, delay: float | None, count: int = 200) -> float:
        """Mean seconds of one ``SELECT 1`` (simple query: one round trip): what a round trip really costs."""
        with self.connection("postgres", delay) as (db, _proxy):
            for _ in range(20):
                db.run("SELECT 1", "bench")
            started = time.perf_counter()
            for _ in range(count):
                db.run("SELECT 1", "bench")
            return (time.perf_counter() - started) / count

    def measure(self, *, strategy: str, size: str, database: str, table: str, delay: float | None,
                pages: list[list[dict[str, Any]]], page_size: int, mean_bytes: int,
                body: Callable[[Database, list[list[dict[str, Any]]]], dict[str, int]],
                prepare: Callable[[Database], None] | None = None, truncate: bool = True,
                expected_rows: int | None = None) -> Run:
        """Time ``body(db, pages)``, release dicts to committed rows, with CPU, WAL and wire round trips."""
        releases = sum(map(len, pages))
        if truncate:
            self.reset(database, table)
        else:
            self.dbs[database].run("CHECKPOINT", "bench")
        with self.connection(database, delay) as (db, proxy):
            if prepare is not None:
                prepare(db)
            backend = int(db.run("SELECT pg_backend_pid()", "bench")[0][0])
            wal_before = self.wal_lsn()
            server_before, backend_before = server_cpu(self.postmaster), process_cpu(backend)
            self_before = db.round_trips
            if proxy is not None:
                proxy.reset_round_trips()
            process_before, thread_before = time.process_time(), time.thread_time()
            started = time.perf_counter()
            counts = body(db, pages)
            seconds = time.perf_counter() - started
            thread_cpu = time.thread_time() - thread_before
            process_cpu_used = time.process_time() - process_before
            wire = proxy.round_trips if proxy is not None else None
            backend_used = process_cpu(backend) - backend_before
            server_used = server_cpu(self.postmaster) - server_before
            self_trips = db.round_trips - self_before
        run = Run(strategy=strategy, size=size, delay_ms=(delay or 0.0) * 1000, releases=releases,
                  page_size=page_size, pages=len(pages), seconds=seconds, mean_bytes=mean_bytes,
                  wire_round_trips=wire,
                  self_round_trips=self_trips if strategy.startswith("engine") else None,
                  client_cpu=thread_cpu, proxy_cpu=max(0.0, process_cpu_used - thread_cpu),
                  backend_cpu=backend_used, other_server_cpu=max(0.0, server_used - backend_used),
                  wal_bytes=self.wal_lsn() - wal_before, rows_after=self.count(database, table),
                  counts=counts)
        wanted = releases if expected_rows is None else expected_rows
        if run.rows_after != wanted:
            raise SystemExit(f"{strategy}: {run.rows_after} rows in {table} after the run, expected {wanted}")
        return run


# --- the strategies -----------------------------------------------------------------------------------------

_SEED_ROW_SQL = ("INSERT INTO seed_releases (ocid, release_id, release_date, data) "
                 "VALUES (:ocid, :release_id, :release_date, :data) "
                 "ON CONFLICT (ocid, release_id) DO UPDATE SET release_date = EXCLUDED.release_date, "
                 "data = EXCLUDED.data")


def seed_per_row(db: Database, pages: list[list[dict[str, Any]]]) -> dict[str, int]:
    run = db.connection.run
    for page in pages:
        for release in page:
            ocid, release_id, release_date, data = seed_values(release)
            run("BEGIN")
            run(_SEED_ROW_SQL, ocid=ocid, release_id=release_id, release_date=release_date, data=data)
            run("COMMIT")
    return {}


def _values_sql(rows: int) -> str:
    values = ",".join(f"(:p{4 * row},:p{4 * row + 1},:p{4 * row + 2},:p{4 * row + 3})" for row in range(rows))
    return (f"INSERT INTO seed_releases (ocid, release_id, release_date, data) VALUES {values} "
            "ON CONFLICT (ocid, release_id) DO UPDATE SET release_date = EXCLUDED.release_date, "
            "data = EXCLUDED.data")


_VALUES_SQL: dict[int, str] = {}


def seed_values_x100(db: Database, pages: list[list[dict[str, Any]]]) -> dict[str, int]:
    run = db.connection.run
    for page in pages:
        run("BEGIN")
        for start_at in range(0, len(page), 100):
            chunk = page[start_at:start_at + 100]
            params: dict[str, str] = {}
            for row, release in enumerate(chunk):
                for column, value in enumerate(seed_values(release)):
                    params[f"p{4 * row + column}"] = value
            sql = _VALUES_SQL.get(len(chunk)) or _VALUES_SQL.setdefault(len(chunk), _values_sql(len(chunk)))
            run(sql, **params)
        run("COMMIT")
    return {}


def _save(db: Database, page: list[dict[str, Any]], strategy: str) -> PageResult:
    if strategy == DEFAULT_STRATEGY:
        return save_page(db, page, SOURCE)
    return save_page(db, page, SOURCE, strategy=strategy)  # type: ignore[call-arg, unused-ignore]


def engine_prepare(db: Database, strategy: str = DEFAULT_STRATEGY) -> None:
    """An empty page: prepares the page statement (once per connection, like a warm worker), writes nothing."""
    _save(db, [], strategy)


def engine(db: Database, pages: list[list[dict[str, Any]]], strategy: str = DEFAULT_STRATEGY) -> dict[str, int]:
    total = PageResult()
    for page in pages:
        total += _save(db, page, strategy)
    return {"inserted": total.inserted, "updated": total.updated, "unchanged": total.unchanged,
            "rejected": total.rejected_total, "round_trips": total.round_trips, "pages": total.pages}


def engine_with(strategy: str) -> tuple[Callable[[Database, list[list[dict[str, Any]]]], dict[str, int]],
                                        Callable[[Database], None]]:
    """The body and the warm-up of the engine with a non-default write strategy."""
    return (lambda db, pages: engine(db, pages, strategy)), (lambda db: engine_prepare(db, strategy))


_COPY_SQL = f"COPY raw_releases ({', '.join(RAW_COLUMNS)}) FROM STDIN"


def raw_copy(db: Database, pages: list[list[dict[str, Any]]]) -> dict[str, int]:
    # Autocommit: each COPY is its own transaction, committed (and flushed) when it completes.
    run = db.connection.run
    for page in pages:
        text = "\n".join(map(copy_line, page)) + "\n"
        run(_COPY_SQL, stream=[text.encode("utf-8")])
    return {}


class NullDatabase:
    """Stands in for the database to time the engine's client side alone (and to capture a page parameter)."""

    broken = False  # what ingest.worker.Connections checks before reusing a connection

    def __init__(self) -> None:
        self.round_trips = 0
        self.parameters: list[str] = []
        self.keep = False

    def execute(self, sql: str, where: str, **params: Any) -> list[list[Any]]:
        self.round_trips += 1
        if self.keep:
            self.parameters.append(params["page"])
        return [[0, 0, 0, 0]]

    def close(self) -> None:
        pass


# --- reporting ----------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, flush=True)


def _fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_opt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _engine_for(runs: list[Run], delay_ms: float) -> Run | None:
    for run in runs:
        if run.strategy == "engine (save_page)" and run.delay_ms == delay_ms:
            return run
    return None


def _loopback_of(runs: list[Run], run: Run) -> Run | None:
    for other in runs:
        if other.strategy == run.strategy and other.delay_ms == 0 and other is not run:
            return other
    return None


def print_table(label: str, info: dict[str, Any], runs: list[Run]) -> None:
    print(f"\n=== {label} releases: {info['releases']:,} releases, mean {info['mean_bytes']:,} B of JSON, "
          f"pages of {info['page_size']} releases (~{info['page_size'] * info['mean_bytes'] / 1e6:.2f} MB) ===")
    header = (f"{'strategy':<30} {'RTT':>4} {'releases':>8} {'rel/s':>8} {'MB/s':>6} {'engine is':>10} "
              f"{'RT/page wire':>12} {'RT/page self':>12} {'vs 0 ms':>8}")
    print("(engine is = engine rel/s / this strategy's rel/s at the same RTT; RT/page wire = round trips counted "
          "by the proxy per page;\n RT/page self = the engine's own count; vs 0 ms = rel/s at 1 ms / rel/s at 0 ms; "
          f"best of {info['repeat']} runs except the per-row seed)")
    print(header)
    print("-" * len(header))
    for run in runs:
        engine_run = _engine_for(runs, run.delay_ms)
        if run.strategy == "engine (save_page)" or engine_run is None or not run.rate:
            ratio = "-"
        else:
            ratio = f"{engine_run.rate / run.rate:.2f}x"
        loopback = _loopback_of(runs, run) if run.delay_ms else None
        versus = f"{run.rate / loopback.rate:.0%}" if loopback and loopback.rate else "-"
        rtt = "n/a" if run.wire_round_trips is None else f"{run.delay_ms:g}ms"
        print(f"{run.strategy:<30} {rtt:>4} {run.releases:>8,} {_fmt_int(run.rate):>8} "
              f"{run.mb_per_second:>6.1f} {ratio:>10} {_fmt_opt(run.wire_per_page):>12} "
              f"{_fmt_opt(run.self_per_page):>12} {versus:>8}")
    print("\nwhere the time goes (seconds; client = main thread CPU, proxy = proxy threads, backend = "
          "the connection's postgres process,\nother = the rest of the server: WAL writer, checkpointer, "
          "autovacuum; waiting = wall - client - backend;\nWAL = bytes of WAL written by the whole server "
          "during the run, autovacuum included)")
    header = (f"{'strategy':<30} {'RTT':>4} {'wall':>7} {'client':>7} {'proxy':>6} {'backend':>7} "
              f"{'other':>6} {'waiting':>7} {'WAL MB':>7} {'WAL/data':>8}")
    print(header)
    print("-" * len(header))
    for run in runs:
        waiting = max(0.0, run.seconds - run.client_cpu - run.backend_cpu)
        rtt = "n/a" if run.wire_round_trips is None else f"{run.delay_ms:g}ms"
        data_bytes = run.releases * run.mean_bytes
        print(f"{run.strategy:<30} {rtt:>4} {run.seconds:>7.2f} {run.client_cpu:>7.2f} {run.proxy_cpu:>6.2f} "
              f"{run.backend_cpu:>7.2f} {run.other_server_cpu:>6.2f} {waiting:>7.2f} "
              f"{run.wal_bytes / 1e6:>7.1f} {run.wal_bytes / data_bytes if data_bytes else 0:>8.2f}")
    if info.get("client_only_seconds"):
        engine_run = _engine_for(runs, 0.0)
        share = f" = {info['client_only_seconds'] / engine_run.seconds:.0%} of the engine's wall time" \
            if engine_run else ""
        print(f"engine client side alone (no database: read, validate, serialise, hash, build the "
              f"parameter): "
              f"{info['client_only_seconds']:.2f} s, {info['client_only_rate']:,.0f} rel/s{share}")


def targets_block(sizes: dict[str, dict[str, Any]],
                  extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    results = []
    for label, info in sizes.items():
        runs: list[Run] = info["run_objects"]
        engine_run = _engine_for(runs, 0.0)
        copy_run = next((run for run in runs if run.strategy.startswith("raw COPY") and run.delay_ms == 0),
                        None)
        slow = _engine_for(runs, 1.0)
        if engine_run and copy_run:
            value = engine_run.rate / copy_run.rate
            results.append({"size": label, "target": f"engine / raw COPY >= {TARGET_VS_COPY:.0%}",
                            "value": round(value, 3), "display": f"{value:.0%}",
                            "pass": value >= TARGET_VS_COPY})
        if engine_run and engine_run.wire_per_page is not None:
            value = engine_run.wire_per_page
            results.append({"size": label, "target": f"engine round trips per page <= {TARGET_ROUND_TRIPS}",
                            "value": round(value, 3),
                            "display": f"{value:.2f} on the wire, "
                                       f"{engine_run.self_per_page:.2f} self-counted",
                            "pass": value <= TARGET_ROUND_TRIPS})
        if engine_run and slow:
            value = slow.rate / engine_run.rate
            results.append({"size": label, "target": f"engine at 1 ms >= {TARGET_LATENCY:.0%} of loopback",
                            "value": round(value, 3), "display": f"{value:.0%}",
                            "pass": value >= TARGET_LATENCY})
    results.extend(extra or [])
    print("\n=== targets ===")
    width = max([38, *(len(result["target"]) for result in results)])
    for result in results:
        print(f"{'PASS' if result['pass'] else 'FAIL'}  {result['size']:>6}  {result['target']:<{width}} "
              f"{result['display']}")
    return results


# --- explain ------------------------------------------------------------------------------------------------


def explain_page(bench: Bench, database: str, releases: list[dict[str, Any]], label: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the engine's statement for one page, on an empty table, rolled back."""
    null = NullDatabase()
    null.keep = True
    save_page(null, releases, SOURCE, compile_releases=False)  # type: ignore[arg-type]
    parameter = null.parameters[0]
    bench.reset(database, "releases")
    connection = bench.dbs[database].connection
    lines: list[str] = []
    connection.run("BEGIN")
    try:
        started = time.perf_counter()
        connection.run("SELECT jsonb_typeof(CAST(:page AS jsonb))", page=parameter)
        parse_only = time.perf_counter() - started
        sql = writer.UPSERT_SQL
        sql = sql[DEFAULT_STRATEGY] if isinstance(sql, dict) else sql
        rows = connection.run("EXPLAIN (ANALYZE, BUFFERS) " + sql, page=parameter)
        lines = [row[0] for row in rows]
    finally:
        connection.run("ROLLBACK")
    print(f"\n--- EXPLAIN (ANALYZE, BUFFERS) of one engine page: {label}, {len(releases)} releases, "
          f"parameter {len(parameter.encode('utf-8')) / 1e6:.2f} MB; parsing the parameter alone "
          f"(SELECT jsonb_typeof(CAST(:page AS jsonb)), one round trip incl.): {parse_only * 1000:.1f} ms")
    for line in lines:
        print("    " + line)
    return [f"parse only: {parse_only * 1000:.1f} ms", *lines]


# --- the worker Lambda ---------------------------------------------------------------------------------------

WORKER_DATABASE = "bench_worker"
COPY_NAME = "raw COPY (physical limit)"
COPY_BODIES_NAME = "raw COPY from the bodies"
MEMORY_DATABASE = "bench_worker_memory"


def _handler_module() -> Any:
    """``handler.worker``, imported once the environment it reads at import (Powertools) is set."""
    os.environ.update(worker_bench.POWERTOOLS_ENV)
    import handler.worker as module

    return module


def _drop_worker(module: Any) -> None:
    """Close the warm worker and forget it, so the next invocation reconnects with the current environment."""
    if module._worker is not None:
        module._worker.close()
    module._worker = None


def _failures(responses: list[dict[str, Any]]) -> list[Any]:
    return [item for response in responses for item in (response or {}).get("batchItemFailures", [None])]


def measure_worker(bench: Bench, module: Any, *, strategy: str, delay: float, events: list[dict[str, Any]],
                   warm: dict[str, Any], releases: int, messages: int, per_message: int, mean_bytes: int,
                   sink: Any) -> Run:
    """Invoke the handler with every event through a fresh proxy and a freshly connected (then warmed) worker."""
    from ingest.queue import LocalContext

    database = WORKER_DATABASE
    with LatencyProxy("127.0.0.1", bench.server.port, delay_seconds=delay) as proxy:
        os.environ["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
        os.environ["WRITE_STRATEGY"] = strategy
        _drop_worker(module)
        try:
            with contextlib.redirect_stdout(sink):
                warmed = module.lambda_handler(warm, LocalContext(120))
            if _failures([warmed]):
                raise SystemExit(f"worker [{strategy}]: the warm-up invocation failed: {warmed}")
            bench.reset(database, "releases")  # the warm-up's row gone, a clean checkpoint
            db = module._worker.connections._db
            backend = int(db.run("SELECT pg_backend_pid()", "bench")[0][0])
            wal_before = bench.wal_lsn()
            server_before, backend_before = server_cpu(bench.postmaster), process_cpu(backend)
            proxy.reset_round_trips()
            self_before = db.round_trips
            responses = []
            with contextlib.redirect_stdout(sink):
                process_before, thread_before = time.process_time(), time.thread_time()
                started = time.perf_counter()
                for event in events:
                    responses.append(module.lambda_handler(event, LocalContext(120)))
                seconds = time.perf_counter() - started
                thread_cpu = time.thread_time() - thread_before
                process_cpu_used = time.process_time() - process_before
            wire = proxy.round_trips
            backend_used = process_cpu(backend) - backend_before
            server_used = server_cpu(bench.postmaster) - server_before
            if module._worker.connections._db is not db:
                raise SystemExit(f"worker [{strategy}]: the worker reconnected during the run")
            self_trips = db.round_trips - self_before
        finally:
            _drop_worker(module)
    failures = _failures(responses)
    if failures or len(responses) != len(events):
        raise SystemExit(f"worker [{strategy}]: batchItemFailures {failures[:5]} in {len(responses)} responses")
    rejected = {table: bench.count(database, table) for table in ("rejected_messages", "rejected_releases")}
    run = Run(strategy=f"worker [{strategy}]", size="worker", delay_ms=delay * 1000, releases=releases,
              page_size=per_message, pages=messages, seconds=seconds, mean_bytes=mean_bytes,
              wire_round_trips=wire, self_round_trips=self_trips, client_cpu=thread_cpu,
              proxy_cpu=max(0.0, process_cpu_used - thread_cpu), backend_cpu=backend_used,
              other_server_cpu=max(0.0, server_used - backend_used), wal_bytes=bench.wal_lsn() - wal_before,
              rows_after=bench.count(database, "releases"),
              counts={"events": len(events), "messages": messages, "failures": 0, **rejected})
    if run.rows_after != releases or any(rejected.values()):
        raise SystemExit(f"worker [{strategy}]: {run.rows_after} rows after the run (expected {releases}), "
                         f"rejected {rejected}")
    return run


def worker_client_side(module: Any, events: list[dict[str, Any]], strategy: str, sink: Any,
                       overhead_invocations: int) -> dict[str, Any]:
    """Where the worker's client time goes, with no database (a stand-in that answers at once).

    On real events: json.loads of the bodies, ``Worker.process`` of them, the whole handler. On events of
    five one-release pages: the handler's fixed cost per invocation (Powertools: batch processor, logger,
    metrics flush) as handler - Worker.process, and what its INFO logs would add if they were not silenced.
    """
    from ingest.queue import LocalContext
    from ingest.worker import Connections, Message, Worker

    null = NullDatabase()

    def null_worker() -> Worker:
        # The client side of the write alone (compiling's cost: bench/compile_bench.py).
        return Worker(Connections(lambda: null), {}, strategy=strategy,  # type: ignore[arg-type, return-value]
                      compile_releases=False)

    def process_all(bodies: list[str], repeat: int = 1) -> float:
        worker = null_worker()
        began = time.perf_counter()
        for _ in range(repeat):
            for number, body in enumerate(bodies):
                worker.process(Message(f"client-{number}", body, SOURCE))
        return time.perf_counter() - began

    def handler_all(batch: list[dict[str, Any]], repeat: int = 1) -> float:
        module._worker = null_worker()
        try:
            with contextlib.redirect_stdout(sink):
                began = time.perf_counter()
                for _ in range(repeat):
                    for event in batch:
                        response = module.lambda_handler(event, LocalContext(120))
                        if _failures([response]):
                            raise SystemExit(f"the handler without a database failed: {response}")
                return time.perf_counter() - began
        finally:
            module._worker = None

    @contextlib.contextmanager
    def info_logs() -> Iterator[None]:
        """Powertools' INFO logs on (as deployed), written to /dev/null instead of stdout."""
        handlers = [handler for handler in module.logger.handlers if isinstance(handler, logging.StreamHandler)]
        level, streams = module.logger.log_level, [handler.stream for handler in handlers]
        module.logger.setLevel("INFO")
        for handler in handlers:
            handler.setStream(sink)
        try:
            yield
        finally:
            module.logger.setLevel(level)
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)

    bodies = [record["body"] for event in events for record in event["Records"]]
    releases = sum(len(json.loads(body)["page"]["releases"]) for body in bodies)
    began = time.perf_counter()
    for body in bodies:
        json.loads(body)
    parse = time.perf_counter() - began
    process = process_all(bodies)
    handler = handler_all(events)

    tiny = worker_bench.events([worker_bench.tiny_event(SOURCE, 8_000_000 + number)["Records"][0]["body"]
                                for number in range(5)], 5, SOURCE, 8_000_000)
    tiny_bodies = [record["body"] for record in tiny[0]["Records"]]
    handler_all(tiny, 20)  # warm
    tiny_process = min(process_all(tiny_bodies, overhead_invocations) for _ in range(3))
    tiny_quiet = min(handler_all(tiny, overhead_invocations) for _ in range(3))
    with info_logs():
        tiny_loud = min(handler_all(tiny, overhead_invocations) for _ in range(3))
    per_invocation = (tiny_quiet - tiny_process) / overhead_invocations
    logs = (tiny_loud - tiny_quiet) / overhead_invocations
    seconds_per_event = handler / len(events)
    return {"releases": releases, "messages": len(bodies), "invocations": len(events),
            "body_parse_seconds": round(parse, 4), "worker_process_seconds": round(process, 4),
            "handler_seconds": round(handler, 4), "handler_rate": round(releases / handler, 1),
            "overhead_invocations": overhead_invocations,
            "powertools_ms_per_invocation": round(per_invocation * 1000, 4),
            "info_logging_ms_per_invocation": round(logs * 1000, 4),
            "info_logging_share_of_an_event": round(logs / seconds_per_event, 5)}


def copy_bodies(db: Database, bodies: list[str]) -> dict[str, int]:
    """raw COPY starting from the same input as the worker: each body parsed, its releases copied."""
    run = db.connection.run
    for body in bodies:
        page = json.loads(body)["page"]["releases"]
        text = "\n".join(map(copy_line, page)) + "\n"
        run(_COPY_SQL, stream=[text.encode("utf-8")])
    return {}


def bench_worker(bench: Bench, releases: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    module = _handler_module()
    bench.create_database(WORKER_DATABASE)
    mean = round(sum(map(json_size, releases)) / len(releases))
    bodies = worker_bench.inline_bodies(releases, args.worker_per_message, SOURCE)
    events = worker_bench.events(bodies, args.worker_batch, SOURCE)
    warm = worker_bench.tiny_event(SOURCE, 9_000_000)
    body_bytes = [len(body.encode("utf-8")) for body in bodies]
    payloads = [len(worker_bench.event_bytes(event)) for event in events]
    info: dict[str, Any] = {
        "releases": len(releases), "mean_bytes": mean, "per_message": args.worker_per_message,
        "messages": len(bodies), "records_per_event": args.worker_batch, "events": len(events),
        "body_bytes_mean": round(statistics.mean(body_bytes)), "body_bytes_max": max(body_bytes),
        "event_payload_bytes_max": max(payloads), "repeat": args.repeat, "strategies": args.worker_strategies,
    }
    if max(body_bytes) > worker_bench.SQS_MESSAGE_LIMIT or max(payloads) > worker_bench.LAMBDA_PAYLOAD_LIMIT:
        progress(f"[worker] warning: bodies up to {max(body_bytes):,} B, events up to {max(payloads):,} B: "
                 "above what SQS and Lambda accept")
    progress(f"[worker] {len(releases):,} releases (mean {mean:,} B) in {len(bodies)} inline bodies of "
             f"{args.worker_per_message} (mean {info['body_bytes_mean'] / 1e3:,.0f} KB, max "
             f"{max(body_bytes) / 1e3:,.0f} KB), {len(events)} events of {args.worker_batch} records "
             f"(payload up to {max(payloads) / 1e6:.2f} MB)")
    runs: list[Run] = []
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        for delay in (0.0, ONE_MS):
            for strategy in args.worker_strategies:
                tries = [measure_worker(bench, module, strategy=strategy, delay=delay, events=events, warm=warm,
                                        releases=len(releases), messages=len(bodies),
                                        per_message=args.worker_per_message, mean_bytes=mean, sink=sink)
                         for _ in range(max(1, args.repeat))]
                run = min(tries, key=lambda item: item.seconds)
                run.all_seconds = [round(item.seconds, 4) for item in tries]
                runs.append(run)
                progress(f"[worker] {run.strategy} @ {run.delay_ms:g} ms: {run.releases:,} releases in "
                         f"{run.seconds:.2f} s = {run.rate:,.0f} rel/s, {run.mb_per_second:.1f} MB/s, "
                         f"{run.wire_per_message:.2f} RT/message on the wire ({run.self_per_message:.2f} "
                         "self-counted)")
        pages = paginate(releases, args.worker_per_message)
        for name, body in ((COPY_NAME, raw_copy), (COPY_BODIES_NAME, lambda db, _pages: copy_bodies(db, bodies))):
            copy_tries = [bench.measure(strategy=name, size="worker", database=WORKER_DATABASE,
                                        table="raw_releases", delay=0.0, pages=pages,
                                        page_size=args.worker_per_message, mean_bytes=mean, body=body)
                          for _ in range(max(1, args.repeat))]
            copy_run = min(copy_tries, key=lambda item: item.seconds)
            copy_run.all_seconds = [round(item.seconds, 4) for item in copy_tries]
            runs.append(copy_run)
            progress(f"[worker] {name}, pages of {args.worker_per_message}: {copy_run.rate:,.0f} rel/s")
        subset = max(1, min(len(events), args.worker_client_events))
        info["client_side"] = worker_client_side(module, events[:subset], args.worker_strategies[0], sink,
                                                 args.worker_overhead_invocations)
        client = info["client_side"]
        progress(f"[worker] client side without a database ({client['releases']:,} releases, "
                 f"{client['invocations']} invocations): body json.loads {client['body_parse_seconds']:.2f} s, "
                 f"Worker.process {client['worker_process_seconds']:.2f} s, whole handler "
                 f"{client['handler_seconds']:.2f} s ({client['handler_rate']:,.0f} rel/s); Powertools "
                 f"{client['powertools_ms_per_invocation']:.3f} ms/invocation, INFO logs would add "
                 f"{client['info_logging_ms_per_invocation']:.3f} ms/invocation")
    finally:
        sink.close()
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("WRITE_STRATEGY", None)
    info["run_objects"] = runs
    return info


def _wide(release: dict[str, Any]) -> dict[str, Any]:
    """The release with curly quotes in its title, as real notices have: its text no longer fits in Latin-1."""
    tender = release["tender"]
    return {**release, "tender": {**tender, "title": f"\u201c{tender['title']}\u201d"}}


def worker_memory(bench: Bench, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Peak RSS of one full invocation in a fresh interpreter (bench/worker_probe.py), then where it goes.

    Twice: with the synthetic releases as they are (all their text is Latin-1, so CPython keeps every body in
    one byte per character) and with curly quotes in each title (two bytes per character, as with most real
    data); the target applies to the larger.
    """
    bench.create_database(MEMORY_DATABASE)
    needed = args.memory_records * (args.memory_page_bytes // 3_000 + 1)  # releases are >= ~3.2 KB
    releases = generate(needed, 4_000, 3_000_000, args.seed + 3_000_000)
    url = bench.server.url_for(MEMORY_DATABASE)
    warm = worker_bench.tiny_event(SOURCE, 3_900_000)
    info: dict[str, Any] = {"target_mib": worker_bench.TARGET_ADDED_PEAK_MIB,
                            "payload_limit_bytes": worker_bench.LAMBDA_PAYLOAD_LIMIT, "variants": {}}
    events: dict[str, dict[str, Any]] = {}
    for variant, pool in (("latin-1", releases), ("wide", [_wide(release) for release in releases])):
        bodies = worker_bench.bodies_of_size(pool, args.memory_records, args.memory_page_bytes, SOURCE,
                                             first_number=3_000_000)
        event = events[variant] = worker_bench.events(bodies, args.memory_records, SOURCE,
                                                      first_number=3_000_000)[0]
        payload = len(worker_bench.event_bytes(event))
        body_bytes = [len(body.encode("utf-8")) for body in bodies]
        releases_per_body = [body.count('"ocid":"') for body in bodies]
        progress(f"[memory] {variant}: one invocation of {len(bodies)} records, bodies "
                 f"{sum(body_bytes) / 1e6:.2f} MB ({', '.join(f'{size / 1e3:.0f} KB' for size in body_bytes)}), "
                 f"payload {payload / 1e6:.2f} MB (Lambda limit {worker_bench.LAMBDA_PAYLOAD_LIMIT / 1e6:.2f} MB)")
        bench.reset(MEMORY_DATABASE, "releases")
        clean = worker_bench.probe_memory(workdir, url, event, warm, name=variant)
        expected = sum(releases_per_body) + 1
        stored = bench.count(MEMORY_DATABASE, "releases")
        if clean["failures"] or stored != expected:
            raise SystemExit(f"the memory probe's invocation failed: {clean['failures']}, {stored} rows "
                             f"(expected {expected})")
        info["variants"][variant] = {"records": len(bodies), "body_bytes": body_bytes,
                                     "releases_per_body": releases_per_body, "payload_bytes": payload,
                                     "clean": clean}
        progress(f"[memory] {variant}: warm RSS {clean['kib']['rss_before'] / 1024:.1f} MiB; added peak "
                 f"{clean['added_peak_mib']:.1f} MiB (the event alone +{clean['event_built_added_mib']:.1f} MiB; "
                 f"ru_maxrss delta {clean['maxrss_delta_mib']:.1f} MiB); invocation {clean['invoke_seconds']:.2f} s")
    worst = max(info["variants"], key=lambda name: info["variants"][name]["clean"]["added_peak_mib"])
    info["worst"] = worst
    info["added_peak_mib"] = info["variants"][worst]["clean"]["added_peak_mib"]
    info["pass"] = info["added_peak_mib"] <= worker_bench.TARGET_ADDED_PEAK_MIB
    if not args.no_tracemalloc:
        bench.reset(MEMORY_DATABASE, "releases")  # the same rows again: inserted, not unchanged
        traced = worker_bench.probe_memory(workdir, url, events[worst], warm, name=worst, trace=True)
        info["tracemalloc_variant"] = worst
        info["tracemalloc"] = traced.get("tracemalloc")
        info["tracemalloc_run_added_peak_mib"] = traced["added_peak_mib"]
    return info


def print_worker(info: dict[str, Any] | None, memory: dict[str, Any] | None,
                 imports: dict[str, Any] | None) -> None:
    if info:
        print_worker_runs(info)
    print_worker_resources(memory, imports)


def print_worker_runs(info: dict[str, Any]) -> None:
    runs: list[Run] = info["run_objects"]
    copy_run = next((run for run in runs if run.strategy == COPY_NAME), None)
    copy_bodies_run = next((run for run in runs if run.strategy == COPY_BODIES_NAME), None)
    print(f"\n=== worker: handler.worker.lambda_handler in-process, {info['releases']:,} releases (mean "
          f"{info['mean_bytes']:,} B) in {info['messages']} inline messages of {info['per_message']} releases "
          f"(mean body {info['body_bytes_mean'] / 1e3:,.0f} KB), {info['events']} events of "
          f"{info['records_per_event']} records ===")
    print("(timed from the event dicts to committed rows: body JSON parsing, Powertools, the engine, commits; a warm "
          "container:\n connected and prepared by one warm-up invocation first; vs COPY = rel/s / raw COPY rel/s of "
          "the same releases in pages of the same size,\n from the release dicts as in the tables above (the "
          "target); vs COPY(b) = the same against raw COPY starting from the bodies (json.loads included);\n"
          " RT/msg = round trips per message, on the wire (proxy) and self-counted; vs 0 ms = rel/s at 1 ms / the "
          f"same at 0 ms;\n client, backend, wall in seconds; best of {info['repeat']})")
    header = (f"{'strategy':<28} {'RTT':>4} {'releases':>8} {'rel/s':>8} {'MB/s':>6} {'vs COPY':>8} "
              f"{'vs COPY(b)':>10} {'RT/msg wire':>11} {'RT/msg self':>11} {'vs 0 ms':>8} {'client':>7} "
              f"{'backend':>7} {'wall':>6}")
    print(header)
    print("-" * len(header))
    for run in runs:
        worker = run.strategy.startswith("worker")
        versus_copy = f"{run.rate / copy_run.rate:.0%}" if copy_run and run is not copy_run else "-"
        versus_bodies = f"{run.rate / copy_bodies_run.rate:.0%}" if copy_bodies_run and worker else "-"
        loopback = _loopback_of(runs, run) if run.delay_ms else None
        versus = f"{run.rate / loopback.rate:.0%}" if loopback and loopback.rate else "-"
        print(f"{run.strategy:<28} {run.delay_ms:>3g}ms {run.releases:>8,} {_fmt_int(run.rate):>8} "
              f"{run.mb_per_second:>6.1f} {versus_copy:>8} {versus_bodies:>10} {_fmt_opt(run.wire_per_message):>11} "
              f"{_fmt_opt(run.self_per_message):>11} {versus:>8} {run.client_cpu:>7.2f} {run.backend_cpu:>7.2f} "
              f"{run.seconds:>6.2f}")
    client = info.get("client_side")
    if client:
        print(f"client side without a database, {client['releases']:,} releases in {client['invocations']} "
              f"invocations: json.loads of the bodies {client['body_parse_seconds']:.2f} s, Worker.process "
              f"{client['worker_process_seconds']:.2f} s,\n whole handler {client['handler_seconds']:.2f} s = "
              f"{client['handler_rate']:,.0f} rel/s; the handler's fixed cost (Powertools; "
              f"{client['overhead_invocations']} invocations of five one-release pages) "
              f"{client['powertools_ms_per_invocation']:.3f} ms per invocation;\n its INFO logs, silenced in the "
              f"timed runs, would add {client['info_logging_ms_per_invocation']:.3f} ms per invocation = "
              f"{client['info_logging_share_of_an_event']:.3%} of an invocation of the timed events")


def print_worker_resources(memory: dict[str, Any] | None, imports: dict[str, Any] | None) -> None:
    if memory:
        print(f"\nmemory (fresh interpreter each; one full invocation after a warm-up invocation; added peak = VmHWM "
              f"after - VmRSS before the event was read,\n the peak reset just before; target <= "
              f"{memory['target_mib']} MiB on the larger):")
        for variant, item in memory["variants"].items():
            clean = item["clean"]
            kib = clean["kib"]
            print(f"  {variant:<8} event of {item['records']} records, bodies {sum(item['body_bytes']):,} B "
                  f"({', '.join(f'{size / 1e3:.0f} KB' for size in item['body_bytes'])}; "
                  f"{sum(item['releases_per_body']):,} releases), payload {item['payload_bytes']:,} B (limit "
                  f"{memory['payload_limit_bytes']:,})")
            print(f"           warm RSS {kib['rss_before'] / 1024:.1f} MiB (peak so far {kib['hwm_before'] / 1024:.1f}"
                  f" MiB); peak during the invocation {kib['hwm_after'] / 1024:.1f} MiB; added peak "
                  f"{clean['added_peak_mib']:.1f} MiB (ru_maxrss after - before {clean['maxrss_delta_mib']:.1f} MiB)")
            print(f"           the event alone (payload bytes + parsed dict): +{clean['event_built_added_mib']:.1f} "
                  f"MiB; still resident after: +{clean['retained_after_mib']:.1f} MiB; invocation "
                  f"{clean['invoke_seconds']:.2f} s")
        print(f"  added peak {memory['added_peak_mib']:.1f} MiB ({memory['worst']}): "
              f"{'PASS' if memory['pass'] else 'FAIL'}")
        traced = memory.get("tracemalloc")
        if traced:
            print(f"  tracemalloc ({memory['tracemalloc_variant']}, another fresh interpreter): Python peak "
                  f"{traced['peak_mib']:.1f} MiB; biggest holders in a snapshot at {traced['snapshot_at_mib']:.1f} "
                  f"MiB traced:")
            for item in traced.get("by_line", [])[:10]:
                print(f"    {item['mib']:>6.2f} MiB {item['blocks']:>8,} blocks  {item['where']}")
            print("  by call path (our frames, outermost first -> where the allocation happened):")
            for item in traced.get("by_path", [])[:8]:
                path = " > ".join(item["our_frames"]) or "(no frame of ours)"
                print(f"    {item['mib']:>6.2f} MiB  {path} -> {item['allocated_at']}")
    if imports:
        print(f"\ncold import (fresh interpreters, {imports['repeat']} each, alternated; in-process, from the first "
              f"import to the objects built at import):")
        print(f"  import handler.worker: median {imports['handler_median'] * 1000:.0f} ms, min "
              f"{imports['handler_min'] * 1000:.0f} ms; libraries only: median "
              f"{imports['libraries_median'] * 1000:.0f} ms, min {imports['libraries_min'] * 1000:.0f} ms; "
              f"ratio {imports['ratio_median']:.2f}x (min/min "
              f"{imports['ratio_min']:.2f}x; target <= {worker_bench.TARGET_IMPORT_RATIO}x: "
              f"{'PASS' if imports['pass'] else 'FAIL'}); whole interpreter (median wall): "
              f"{imports['process_wall_median']['handler'] * 1000:.0f} ms vs "
              f"{imports['process_wall_median']['libraries'] * 1000:.0f} ms")
        print(f"  our modules' self time (-X importtime, median of {imports['importtime_runs']}; total "
              f"{imports['our_modules_self_us_total'] / 1000:.1f} ms of "
              f"{imports['importtime_handler_cumulative_us_median'] / 1000:.0f} ms cumulative for handler.worker):")
        for item in imports["our_modules_self_us"][:10]:
            print(f"    {item['self_us'] / 1000:>6.2f} ms  {item['module']}")
        deployed = imports.get("without_package_bytecode")
        if deployed:
            print(f"  a package without bytecode (make build byte-compiles when it finds python3.13; without it, "
                  f"/var/task being read-only,\n the package's modules compile at every cold start; stdlib and "
                  f"{', '.join(deployed['provided_by_runtime'][:3])}... "
                  f"keep theirs), medians of {deployed['repeat']}: import handler.worker "
                  f"{deployed['handler_median'] * 1000:.0f} ms, libraries only "
                  f"{deployed['libraries_median'] * 1000:.0f} ms ({deployed['ratio_median']:.2f}x); with bytecode "
                  f"{imports['handler_median'] * 1000:.0f} ms: "
                  f"+{(deployed['handler_median'] - imports['handler_median']) * 1000:.0f} ms per cold start")


def worker_targets(info: dict[str, Any] | None, memory: dict[str, Any] | None,
                   imports: dict[str, Any] | None) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if info:
        runs: list[Run] = info["run_objects"]
        copy_run = next((run for run in runs if run.strategy == COPY_NAME), None)
        for strategy in info["strategies"]:
            name = f"worker [{strategy}]"
            fast = next((run for run in runs if run.strategy == name and run.delay_ms == 0), None)
            slow = next((run for run in runs if run.strategy == name and run.delay_ms == 1.0), None)
            if fast and copy_run:
                value = fast.rate / copy_run.rate
                results.append({"size": "worker", "target": f"{name} / raw COPY >= {TARGET_VS_COPY:.0%}",
                                "value": round(value, 3), "display": f"{value:.0%}", "pass": value >= TARGET_VS_COPY})
            if fast and fast.wire_per_message is not None:
                value = fast.wire_per_message
                results.append({"size": "worker", "target": f"{name} round trips per message <= {TARGET_ROUND_TRIPS}",
                                "value": round(value, 3),
                                "display": f"{value:.2f} on the wire, {fast.self_per_message:.2f} self-counted",
                                "pass": value <= TARGET_ROUND_TRIPS})
            if fast and slow:
                value = slow.rate / fast.rate
                results.append({"size": "worker", "target": f"{name} at 1 ms >= {TARGET_LATENCY:.0%} of loopback",
                                "value": round(value, 3), "display": f"{value:.0%}", "pass": value >= TARGET_LATENCY})
    if memory:
        value = memory["added_peak_mib"]
        worst = memory["variants"][memory["worst"]]
        results.append({"size": "worker", "target": f"added peak RSS <= {worker_bench.TARGET_ADDED_PEAK_MIB} MiB",
                        "value": value, "display": f"{value:.1f} MiB ({sum(worst['body_bytes']) / 1e6:.2f} MB of "
                                                   f"bodies in {worst['records']} records, {memory['worst']})",
                        "pass": memory["pass"]})
    if imports:
        value = imports["ratio_median"]
        results.append({"size": "worker", "target": f"cold import <= {worker_bench.TARGET_IMPORT_RATIO}x libraries",
                        "value": value, "display": f"{value:.2f}x ({imports['handler_median'] * 1000:.0f} ms vs "
                                                   f"{imports['libraries_median'] * 1000:.0f} ms, medians)",
                        "pass": imports["pass"]})
    return results


# --- main ---------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu": model,
            "memory": memory,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of every count (a smoke run)")
    parser.add_argument("--releases-4k", type=int, help="releases of ~4 KB (default 20000, --quick 2000)")
    parser.add_argument("--releases-20k", type=int, help="releases of ~20 KB (default 5000, --quick 500)")
    parser.add_argument("--page-size-4k", type=int, default=250, help="releases per page of 4 KB ones")
    parser.add_argument("--page-size-20k", type=int, default=50, help="releases per page of 20 KB ones")
    parser.add_argument("--per-row", type=int, help="releases for the per-row seed (default 2000)")
    parser.add_argument("--per-row-1ms", type=int, help="releases for the per-row seed at 1 ms (default 500)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each strategy but the per-row seed; the fastest is reported (default 2)")
    parser.add_argument("--strategies", default=",".join(s for s in STRATEGIES if s != DEFAULT_STRATEGY),
                        help="the engine's other write strategies to run as well, comma-separated "
                             f"(default: %(default)s; the default one, {DEFAULT_STRATEGY}, always runs)")
    parser.add_argument("--replay-strategies", default="unnest",
                        help="other write strategies whose replay (every release unchanged) is timed too "
                             "(default: %(default)s; the default strategy's replay always runs)")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the synthetic releases")
    parser.add_argument("--pg-bin", type=Path, help="PostgreSQL bin directory (default: the wheel's)")
    parser.add_argument("--explain", action="store_true",
                        help="also print EXPLAIN (ANALYZE, BUFFERS) of one engine page of each size")
    parser.add_argument("--output", type=Path,
                        help="where to write the JSON (default: bench/results.json; with --quick, "
                        "build/bench-quick.json, so a smoke run never replaces the tracked figures)")
    worker = parser.add_argument_group("the worker Lambda")
    worker.add_argument("--no-worker", action="store_true", help="skip the worker's throughput, memory and import")
    worker.add_argument("--worker-only", action="store_true",
                        help="only the worker's sections (no seed/engine tables; the 4 KB releases are still made)")
    worker.add_argument("--worker-releases", type=int,
                        help="4 KB releases sent through the handler (default: all of --releases-4k)")
    worker.add_argument("--worker-per-message", type=int, default=200, help="releases per inline message")
    worker.add_argument("--worker-batch", type=int, default=5, help="records per event (the stack's BatchSize)")
    worker.add_argument("--worker-strategies", default="json,unnest", help="WRITE_STRATEGY values to run")
    worker.add_argument("--worker-client-events", type=int, default=4,
                        help="events used to time the handler's client side without a database (default 4)")
    worker.add_argument("--worker-overhead-invocations", type=int, default=200,
                        help="invocations of a five-tiny-page event timing the handler's fixed cost (default 200)")
    worker.add_argument("--memory-page-bytes", type=int, default=950_000,
                        help="bytes of each inline body of the memory probe's event (default 950000)")
    worker.add_argument("--memory-records", type=int, default=5, help="records of the memory probe's event")
    worker.add_argument("--no-tracemalloc", action="store_true",
                        help="skip the second memory probe that finds where the memory goes")
    worker.add_argument("--import-repeat", type=int, help="fresh interpreters per variant (default 9, --quick 7)")
    worker.add_argument("--import-deployed-repeat", type=int, default=5,
                        help="fresh interpreters per variant without the package's bytecode, as deployed (default 5)")
    args = parser.parse_args(argv)
    divide = 10 if args.quick else 1
    if args.output is None:
        args.output = HERE.parent / "build" / "bench-quick.json" if args.quick else HERE / "results.json"
    args.releases_4k = args.releases_4k if args.releases_4k is not None else 20_000 // divide
    args.releases_20k = args.releases_20k if args.releases_20k is not None else 5_000 // divide
    args.per_row = args.per_row if args.per_row is not None else 2_000 // divide
    args.per_row_1ms = args.per_row_1ms if args.per_row_1ms is not None else 500 // divide
    args.strategies = [name for name in args.strategies.split(",") if name and name != DEFAULT_STRATEGY]
    args.worker_strategies = [name for name in args.worker_strategies.split(",") if name]
    args.replay_strategies = [name for name in args.replay_strategies.split(",")
                              if name and name != DEFAULT_STRATEGY]
    if set(args.replay_strategies) - set(STRATEGIES):
        parser.error(f"unknown replay strategies; the engine has {', '.join(STRATEGIES)}")
    args.import_repeat = args.import_repeat if args.import_repeat is not None else (7 if args.quick else 9)
    if set(args.worker_strategies) - set(STRATEGIES):
        parser.error(f"unknown worker strategies; the engine has {', '.join(STRATEGIES)}")
    unknown = set(args.strategies) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown write strategies {', '.join(sorted(unknown))}; the engine has {', '.join(STRATEGIES)}")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def bench_size(bench: Bench, label: str, key: str, releases: list[dict[str, Any]], page_size: int,
               args: argparse.Namespace) -> dict[str, Any]:
    database = f"bench_{key}"
    bench.create_database(database)
    mean = round(sum(map(json_size, releases)) / len(releases))
    pages = paginate(releases, page_size)
    info: dict[str, Any] = {"releases": len(releases), "mean_bytes": mean, "page_size": page_size,
                            "pages": len(pages), "repeat": args.repeat}
    progress(f"[{label}] {len(releases):,} releases, mean {mean:,} B (compact UTF-8 JSON), "
             f"min {min(map(json_size, releases)):,} B, max {max(map(json_size, releases)):,} B; "
             f"{len(pages)} pages of {page_size}")
    runs: list[Run] = []

    def best(**measure: Any) -> Run:
        tries = [bench.measure(**measure, **common) for _ in range(max(1, args.repeat))]
        chosen = min(tries, key=lambda run: run.seconds)
        chosen.all_seconds = [round(run.seconds, 4) for run in tries]
        return chosen

    def record(run: Run) -> Run:
        runs.append(run)
        wire = "" if run.wire_per_page is None else f", {run.wire_per_page:,.2f} RT/page on the wire"
        own = "" if run.self_per_page is None else f" ({run.self_per_page:,.2f} self-counted)"
        where = "direct" if run.wire_round_trips is None else f"{run.delay_ms:g} ms"
        progress(f"[{label}] {run.strategy} @ {where}"
                 f": {run.releases:,} releases in {run.seconds:.2f} s = {run.rate:,.0f} rel/s, "
                 f"{run.mb_per_second:.1f} MB/s{wire}{own}")
        return run

    def per_row_pages(limit: int) -> list[list[dict[str, Any]]]:
        return paginate(releases[:min(limit, len(releases))], page_size)

    common = {"size": label, "database": database, "page_size": page_size, "mean_bytes": mean}
    for delay in (0.0, ONE_MS):
        limit = args.per_row if delay == 0 else args.per_row_1ms
        if limit > 0:  # slow and far behind: measured once
            record(bench.measure(strategy="seed per-row", table="seed_releases", delay=delay,
                                 pages=per_row_pages(limit), body=seed_per_row, **common))
        record(best(strategy="seed VALUES x100", table="seed_releases", delay=delay, pages=pages,
                    body=seed_values_x100))
        engine_run = record(best(strategy="engine (save_page)", table="releases", delay=delay, pages=pages,
                                 body=engine, prepare=engine_prepare))
        if engine_run.counts.get("inserted") != len(releases):
            raise SystemExit(f"engine inserted {engine_run.counts}, expected {len(releases)}")
        for strategy in args.strategies:
            body, prepare = engine_with(strategy)
            other = record(best(strategy=f"engine [{strategy}]", table="releases", delay=delay, pages=pages,
                                body=body, prepare=prepare))
            if other.counts.get("inserted") != len(releases):
                raise SystemExit(f"engine [{strategy}] inserted {other.counts}, expected {len(releases)}")
        if delay == 0:
            # Right after an engine run: the table holds every release already.
            replay = record(best(strategy="engine, replay (unchanged)", table="releases", delay=delay,
                                 pages=pages, body=engine, prepare=engine_prepare, truncate=False))
            if replay.counts.get("unchanged") != len(releases):
                raise SystemExit(f"the replay was not all unchanged: {replay.counts}")
            for strategy in args.replay_strategies:
                body, prepare = engine_with(strategy)
                other = record(best(strategy=f"engine [{strategy}], replay", table="releases", delay=delay,
                                    pages=pages, body=body, prepare=prepare, truncate=False))
                if other.counts.get("unchanged") != len(releases):
                    raise SystemExit(f"the [{strategy}] replay was not all unchanged: {other.counts}")
        record(best(strategy="raw COPY (physical limit)", table="raw_releases", delay=delay, pages=pages,
                    body=raw_copy))
        if delay == 0:
            record(best(strategy="engine, direct (no proxy)", table="releases", delay=None, pages=pages,
                        body=engine, prepare=engine_prepare))

    # The engine's client side alone: everything save_page does before the database is involved.
    null = NullDatabase()
    started = time.perf_counter()
    for page in pages:
        save_page(null, page, SOURCE, compile_releases=False)  # type: ignore[arg-type]
    info["client_only_seconds"] = time.perf_counter() - started
    info["client_only_rate"] = len(releases) / info["client_only_seconds"]
    progress(f"[{label}] engine client side alone: {info['client_only_seconds']:.2f} s, "
             f"{info['client_only_rate']:,.0f} rel/s")
    if args.explain:
        info["explain"] = explain_page(bench, database, pages[0], label)
        if len(releases) >= 1000 and page_size != 1000:
            info["explain_1000"] = explain_page(bench, database, releases[:1000],
                                                f"{label} (DEFAULT_BATCH_SIZE)")
    info["run_objects"] = runs
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    begun = time.perf_counter()
    details = machine()
    progress(f"machine: {details['nproc']} CPUs ({details['cpu']}), {details['memory']} RAM, Python "
             f"{details['python']} on {details['platform']}")

    specs = [("4 KB", "4k", args.releases_4k, 4_000, args.page_size_4k, 0),
             ("20 KB", "20k", args.releases_20k, 20_000, args.page_size_20k, 1_000_000)]
    data: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for _label, key, count, target, _page_size, first in specs:
        if count > 0:
            data[key] = generate(count, target, first, args.seed + first)
    # The releases stay in memory for every run: keep the garbage collector from walking them again and again.
    gc.collect()
    gc.freeze()
    progress(f"generated {sum(map(len, data.values())):,} releases in {time.perf_counter() - started:.1f} s "
             f"(seed {args.seed})")

    tmp = Path(tempfile.mkdtemp(prefix="ocds-bench-"))
    server: LocalServer | None = None
    bench: Bench | None = None
    sizes: dict[str, dict[str, Any]] = {}
    try:
        server = start(tmp / "pg", args.pg_bin)
        bench = Bench(server)
        version = bench.admin.run("SELECT version()", "bench")[0][0]
        settings = {name: bench.admin.run(f"SHOW {name}", "bench")[0][0]
                    for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_level",
                                 "shared_buffers", "work_mem", "max_wal_size", "checkpoint_timeout",
                                 "wal_compression", "data_checksums", "default_toast_compression")}
        progress(f"PostgreSQL {server.version()}: {version}")
        progress("settings: " + ", ".join(f"{name}={value}" for name, value in settings.items()))
        round_trips = {"direct": bench.round_trip(None), "proxy 0 ms": bench.round_trip(0.0),
                       "proxy 1 ms": bench.round_trip(ONE_MS)}
        progress("one round trip (SELECT 1, mean of 200): " +
                 ", ".join(f"{name} {seconds * 1000:.3f} ms" for name, seconds in round_trips.items()))
        for label, key, _count, _target, page_size, _first in specs:
            if key in data and not args.worker_only:
                sizes[label] = bench_size(bench, label, key, data[key], page_size, args)
        worker_info = memory = imports = None
        if not args.no_worker:
            wanted = args.worker_releases if args.worker_releases is not None else args.releases_4k
            pool = data.get("4k", [])
            worker_releases = pool[:wanted] if len(pool) >= wanted else generate(wanted, 4_000, 0, args.seed)
            if worker_releases:
                worker_info = bench_worker(bench, worker_releases, args)
            memory = worker_memory(bench, args, tmp)
            progress(f"[import] cold imports: {args.import_repeat} fresh interpreters per variant")
            imports = worker_bench.cold_import(args.import_repeat, tmp, deployed_repeat=args.import_deployed_repeat)
            progress(f"[import] handler.worker {imports['handler_median'] * 1000:.0f} ms vs libraries "
                     f"{imports['libraries_median'] * 1000:.0f} ms (medians): {imports['ratio_median']:.2f}x")
        # What keeping compiled_releases current costs the worker per page (bench/compile_bench.py).
        compiling = None if args.no_worker else compile_bench.run(bench, generate, args.seed,
                                                                  2_000 if args.quick else 10_000)
        for label, info in sizes.items():
            print_table(label, info, info["run_objects"])
        if worker_info or memory or imports:
            print_worker(worker_info, memory, imports)
        targets = targets_block(sizes, worker_targets(worker_info, memory, imports))
        total = time.perf_counter() - begun
        print(f"\ntotal {total:.0f} s")
        output = {
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
            "quick": args.quick,
            "seed": args.seed,
            "machine": details,
            "postgresql": {"major": server.version(), "version": version, "settings": settings},
            "round_trip_ms": {name: round(seconds * 1000, 4) for name, seconds in round_trips.items()},
            "sizes": {label: {**{k: v for k, v in info.items() if k != "run_objects"},
                              "runs": [run.as_json() for run in info["run_objects"]]}
                      for label, info in sizes.items()},
            "targets": targets,
            "total_seconds": round(total, 1),
        }
        if worker_info:
            output["worker"] = {**{k: v for k, v in worker_info.items() if k != "run_objects"},
                                "runs": [run.as_json() for run in worker_info["run_objects"]]}
        if memory:
            output["worker_memory"] = memory
        if compiling:
            output["compile"] = compiling
        if imports:
            output["worker_cold_import"] = imports
        output["politeness"] = politeness_bench.run(server.url, server.url_for, 200 if args.quick else 2000, progress)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.output}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping PostgreSQL", file=sys.stderr, flush=True)
        return 130
    finally:
        if bench is not None:
            bench.close()
        if server is not None:
            server.stop(delete=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
