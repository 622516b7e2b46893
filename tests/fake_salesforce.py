"""A local Salesforce REST API on https://127.0.0.1 (simple-salesforce speaks only https), with a
self-signed certificate the tests trust through REQUESTS_CA_BUNDLE. The wire format follows the
recorded responses in tests/data/sfdc_samples: query pages with `totalSize`, `done` and
`nextRecordsUrl`; records with `attributes` and nested relationship objects (`Owner: {Email}`);
errors as `[{"message", "errorCode"}]`; creates as 201 `{"id", "success", "errors"}`.

SOQL understood: SELECT fields | COUNT() FROM object [WHERE terms joined by AND: `F != null`,
`F = 'v'`, `F = true`, `F IN ('a', 'b')`, `F LIKE '%v%'`] [ORDER BY F]. Anything else is a 400
MALFORMED_QUERY.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import re
from pathlib import Path

from tests.wire import WireServer

VERSION = "62.0"
_SOQL = re.compile(r"^\s*SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+?))?(?:\s+ORDER BY\s+(\w+))?\s*$",
                   re.IGNORECASE | re.DOTALL)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (cryptography), written to folder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "sfdc-cert.pem", folder / "sfdc-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class FakeSalesforce(WireServer):
    def __init__(self, folder: Path, session_id: str = "00Dxx!session", page_size: int = 2000):
        self.session_id, self.page_size = session_id, page_size
        self.records: dict[str, list[dict]] = {"Account": [], "Contact": [], "User": [], "Task": [], "FeedItem": []}
        self.queued: list[tuple[int, object, dict]] = []
        self.cursors: dict[str, list[dict]] = {}
        self.ids = itertools.count(1)
        self.cert, key = self_signed(folder)
        super().__init__(tls=(self.cert, key))
        self.content_type = "application/json;charset=UTF-8"

    def env(self) -> dict:
        return {"ARFLOW_SFDC_INSTANCE_URL": self.url, "ARFLOW_SFDC_SESSION_ID": self.session_id,
                "REQUESTS_CA_BUNDLE": str(self.cert), "ARFLOW_HTTP_BACKOFF": "0.01"}

    def add(self, sobject: str, **fields) -> dict:
        prefix = {"Account": "001", "Contact": "003", "User": "005", "Task": "00T", "FeedItem": "0D5"}[sobject]
        fields.setdefault("Id", f"{prefix}WV{next(self.ids):013d}")
        fields.setdefault("CreatedDate", "2020-01-15T10:00:00.000+0000")
        self.records[sobject].append(fields)
        return fields

    def queue(self, status: int, body=None, headers: dict | None = None) -> None:
        self.queued.append((status, body if body is not None else
                            [{"message": "Server error", "errorCode": "SERVER_UNAVAILABLE"}], headers or {}))

    # ---- answers -----------------------------------------------------------------------------
    def answer(self, method, path, query, body, headers):
        if headers.get("Authorization") != f"Bearer {self.session_id}":
            return 401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], {}
        if self.queued:
            return self.queued.pop(0)
        base = f"/services/data/v{VERSION}/"
        if not path.startswith(base):
            return 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}], {}
        rest = path[len(base):]
        if rest.rstrip("/") == "query" and method == "GET":
            return self._query(query.get("q", ""))
        if rest.startswith("query/") and method == "GET":
            return self._page(rest.split("/", 1)[1])
        m = re.fullmatch(r"sobjects/(\w+)/?", rest)
        if m and method == "POST" and m.group(1) in ("Task", "FeedItem"):
            data = json.loads(body)
            if "Id" in data:
                return 400, [{"message": "The Id field should not be specified in the sobject data.",
                              "errorCode": "INVALID_FIELD"}], {}
            rec = self.add(m.group(1), **data)
            return 201, {"id": rec["Id"], "success": True, "errors": []}, {}
        return 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}], {}

    def _query(self, soql: str):
        m = _SOQL.match(soql)
        if not m or m.group(2) not in self.records:
            return 400, [{"message": f"unexpected query: {soql[:80]}", "errorCode": "MALFORMED_QUERY"}], {}
        fields, sobject, where, order = m.groups()
        try:
            rows = [r for r in self.records[sobject] if _where(r, where)]
        except ValueError as exc:
            return 400, [{"message": f"unexpected clause {exc}", "errorCode": "MALFORMED_QUERY"}], {}
        if order:
            rows.sort(key=lambda r: str(r.get(order) or ""))
        if fields.strip().upper() == "COUNT()":
            return 200, {"totalSize": len(rows), "done": True, "records": []}, {}
        names = [f.strip() for f in fields.split(",")]
        shaped = [self._shape(sobject, r, names) for r in rows]
        locator = f"01g{next(self.ids):015d}"
        self.cursors[locator] = shaped
        return 200, self._page_body(locator, 0, len(shaped)), {}

    def _page(self, ident: str):
        locator, _, offset = ident.partition("-")
        if locator not in self.cursors:
            return 400, [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}], {}
        return 200, self._page_body(locator, int(offset or 0), len(self.cursors[locator])), {}

    def _page_body(self, locator: str, offset: int, total: int) -> dict:
        rows = self.cursors[locator][offset:offset + self.page_size]
        body = {"totalSize": total, "done": offset + self.page_size >= total, "records": rows}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{VERSION}/query/{locator}-{offset + self.page_size}"
        return body

    def _shape(self, sobject: str, record: dict, names: list[str]) -> dict:
        out = {"attributes": {"type": sobject, "url": f"/services/data/v{VERSION}/sobjects/{sobject}/{record['Id']}"}}
        for name in names:
            if "." in name:
                rel, field = name.split(".", 1)
                value = record.get(name)
                if value is None and not any(k.startswith(rel + ".") and record.get(k) is not None for k in record):
                    out.setdefault(rel, None)
                    continue
                target = out.get(rel) or {"attributes": {"type": "User", "url": f"/services/data/v{VERSION}/sobjects/User/005"}}
                target[field] = value
                out[rel] = target
            else:
                out[name] = record.get(name)
        return out


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    """A SOQL string literal's value: Salesforce's escape sequences; any other escape is malformed."""
    def one(m):
        if m.group(1) not in _ESCAPES:
            raise ValueError(f"bad escape \\{m.group(1)}")
        return _ESCAPES[m.group(1)]
    return re.sub(r"\\(.)", one, text)


def _where(record: dict, where: str | None) -> bool:
    if not where:
        return True
    for term in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE):
        term = term.strip()
        if m := re.fullmatch(r"([\w.]+)\s*!=\s*null", term, re.IGNORECASE):
            if record.get(m.group(1)) in (None, ""):
                return False
        elif m := re.fullmatch(r"([\w.]+)\s*=\s*'((?:[^'\\]|\\.)*)'", term):
            if str(record.get(m.group(1))) != _unescape(m.group(2)):
                return False
        elif m := re.fullmatch(r"([\w.]+)\s*=\s*(true|false)", term, re.IGNORECASE):
            if bool(record.get(m.group(1), True)) != (m.group(2).lower() == "true"):
                return False
        elif m := re.fullmatch(r"([\w.]+)\s+IN\s*\((.*)\)", term, re.IGNORECASE):
            options = {_unescape(v) for v in re.findall(r"'((?:[^'\\]|\\.)*)'", m.group(2))}
            if str(record.get(m.group(1))) not in options:
                return False
        elif m := re.fullmatch(r"([\w.]+)\s+LIKE\s+'%(.*)%'", term, re.IGNORECASE):
            if m.group(2) not in str(record.get(m.group(1)) or ""):
                return False
        else:
            raise ValueError(term)
    return True
