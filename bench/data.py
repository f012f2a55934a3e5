"""Synthetic OCDS releases for the benchmark: seeded, so every run on any machine loads the same data.

Releases are tenders of about ``target_bytes`` of compact JSON (+-20%, as real ones vary), padded with items and
documents, with text in several languages (some of it outside Latin-1 is added by the memory probe).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

SOURCE = "bench"
SEED = 20_240_601

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

