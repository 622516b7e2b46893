"""The audit log's hash chain (docs/controls.md): each row's hash is sha256 over the previous row's
hash and the row's canonical JSON, written with the row. An edit of a row (in the database or in an
export) no longer matches its hash; a deleted row breaks the link from the row after it.

Pure functions: the ledger uses them as it writes, `arflow audit export` to write the file and
`arflow audit verify` to check one, without the ledger.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json

GENESIS = "0" * 64  # the previous hash of the first row ever written
FIELDS = ("at", "actor", "action", "entity", "entity_id", "detail")  # what a row's hash covers
COLUMNS = ("seq", *FIELDS, "prev_hash", "hash")                       # a row of an export
_ESCAPE = ("=", "+", "-", "@", "\t", "\r", "'")  # cells a spreadsheet would evaluate (and the escape itself)


def when(at) -> str:
    """A row's time as the chain writes it: UTC, ISO 8601, microseconds, no offset."""
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    if at.tzinfo is not None:
        at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")


def canonical(row: dict) -> str:
    """The row's canonical JSON: its six fields, sorted keys, no spaces, UTF-8 as is; a missing
    value is the empty string (so a CSV, which has no null, hashes the same)."""
    values = {k: ("" if row.get(k) is None else str(row[k])) for k in FIELDS}
    values["at"] = when(row["at"]) if row.get("at") not in (None, "") else ""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(prev_hash: str, row: dict) -> str:
    return hashlib.sha256((prev_hash + canonical(row)).encode("utf-8")).hexdigest()


def chain(rows: list[dict], prev_hash: str) -> list[dict]:
    """The rows with their prev_hash and hash, linked from `prev_hash` (the head before them)."""
    out = []
    for r in rows:
        h = row_hash(prev_hash, r)
        out.append({**r, "prev_hash": prev_hash, "hash": h})
        prev_hash = h
    return out


def verify(rows: list[dict]) -> dict:
    """Check a run of rows: each links to the one before (the first to whatever came before the
    export) and matches its own hash. Returns ok, rows, and for the first break its seq and why."""
    prev = None
    for n, r in enumerate(rows, start=1):
        seq = r.get("seq")
        if not r.get("hash") or not r.get("prev_hash"):
            return {"ok": False, "rows": len(rows), "row": n, "seq": seq, "problem": "missing",
                    "why": f"row {n} (seq {seq}) has no hash: it was not written by the chain"}
        if prev is not None and r["prev_hash"] != prev["hash"]:
            return {"ok": False, "rows": len(rows), "row": n, "seq": seq, "problem": "missing",
                    "why": f"row {n} (seq {seq}) does not follow row {n - 1} (seq {prev.get('seq')}): "
                           "a row between them is missing, or they were reordered"}
        if row_hash(r["prev_hash"], r) != r["hash"]:
            return {"ok": False, "rows": len(rows), "row": n, "seq": seq, "problem": "edited",
                    "why": f"row {n} (seq {seq}) was changed after it was written: its content does not match "
                           "its hash"}
        prev = r
    return {"ok": True, "rows": len(rows), "anchor": rows[0]["prev_hash"] if rows else None,
            "head": rows[-1]["hash"] if rows else None}


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_ESCAPE) else text


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def to_csv(rows: list[dict]) -> str:
    """The rows as CSV, cells a spreadsheet would evaluate escaped with an apostrophe (undone on read)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def to_json(rows: list[dict], meta: dict) -> str:
    return json.dumps({**meta, "columns": list(COLUMNS), "rows": [{c: r.get(c) for c in COLUMNS} for r in rows]},
                      ensure_ascii=False, indent=1, default=str) + "\n"


class AuditFileError(ValueError):
    """The file is not an audit export (not CSV with the export's columns, nor its JSON)."""


def read_export(text: str) -> list[dict]:
    """The rows of an export, CSV or JSON (told apart by the first character)."""
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise AuditFileError(f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            raise AuditFileError("JSON without a `rows` list: not an arflow audit export")
        return doc["rows"]
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise AuditFileError(f"CSV lacks column(s) {', '.join(missing)}: not an arflow audit export")
    rows = [{c: _uncell(r[c] or "") for c in COLUMNS} for r in reader]
    for r in rows:
        r["seq"] = int(r["seq"]) if r["seq"].isdigit() else r["seq"]
    return rows
