"""The CAs verify-full trusts by default: RDS's bundle and the Amazon Trust Services roots (RDS Proxy)."""

from __future__ import annotations

import hashlib
import re
import ssl
from importlib import resources
from pathlib import Path

import certifi

from ingest.store.connection import DatabaseSettings, default_ca_bundle, ssl_context_for

DATA = Path(resources.files("ingest").joinpath("data"))  # type: ignore[arg-type]
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n", re.S)
ROOTS = ["Amazon Root CA 1", "Amazon Root CA 2", "Amazon Root CA 3", "Amazon Root CA 4",
         "Starfield Services Root Certificate Authority - G2"]


def fingerprint(pem: str) -> str:
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def test_the_amazon_trust_services_roots_are_the_five_with_the_documented_fingerprints() -> None:
    text = (DATA / "amazon-trust-services-roots.pem").read_text("ascii")
    readme = (DATA / "README.md").read_text("utf-8")
    blocks = PEM.findall(text)
    assert len(blocks) == 5
    for label, block in zip(ROOTS, blocks, strict=True):
        assert f'# Label: "{label}"' in text
        assert fingerprint(block) in readme, label


def test_every_root_is_certifi_s_byte_for_byte() -> None:
    # certifi (Mozilla's CA store, installed with httpx) is where the file was taken from.
    store = Path(certifi.where()).read_text("ascii")
    for block in PEM.findall((DATA / "amazon-trust-services-roots.pem").read_text("ascii")):
        assert block in store


def test_verify_full_trusts_rds_and_amazon_trust_services_by_default() -> None:
    # GIVEN a remote database without sslrootcert (an RDS Proxy endpoint, say)
    context = ssl_context_for(DatabaseSettings(user="u", host="ocds.proxy-abc.eu-west-1.rds.amazonaws.com"))
    assert isinstance(context, ssl.SSLContext)
    # THEN the host name is checked and both the RDS CAs and the ACM roots are trusted
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    subjects = {dict(pair[0] for pair in cert["subject"]).get("commonName") for cert in context.get_ca_certs()}
    assert set(ROOTS) <= subjects
    assert any(name and name.startswith("Amazon RDS") for name in subjects)
    assert len(PEM.findall(default_ca_bundle())) == 115 + 5


def test_a_ca_file_given_replaces_the_shipped_ones(tmp_path: Path) -> None:
    only_rds = tmp_path / "rds.pem"
    only_rds.write_text((DATA / "rds-global-bundle.pem").read_text("ascii"))
    context = ssl_context_for(DatabaseSettings(user="u", host="db.example.org", sslrootcert=str(only_rds)))
    assert isinstance(context, ssl.SSLContext)
    subjects = {dict(pair[0] for pair in cert["subject"]).get("commonName") for cert in context.get_ca_certs()}
    assert "Amazon Root CA 1" not in subjects
