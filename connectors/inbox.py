"""Inbound replies: from an IMAP mailbox, a recorded mailbox file (mbox), or a CSV or JSON drop (the
shape a webhook posts). Every reader returns the same frame: message_id, received_on (date),
from_address, subject, body. A reply without a message id gets one from its content, so reading
the same drop twice records it once.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import json
import mailbox
from pathlib import Path

import pandas as pd

COLUMNS = ["message_id", "received_on", "from_address", "subject", "body"]


class InboxError(ValueError):
    """The replies cannot be read; the message says which file or server and why."""


def _text_of(msg) -> str:
    part = msg.get_body(preferencelist=("plain", "html")) if hasattr(msg, "get_body") else None
    if part is None:
        return ""
    try:
        return part.get_content().strip()
    except (LookupError, UnicodeDecodeError):
        return part.get_payload(decode=True).decode("utf-8", "replace").strip()


def parse_message(raw: bytes) -> dict:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    when = msg.get("Date")
    try:
        received = email.utils.parsedate_to_datetime(when).date() if when else None
    except (TypeError, ValueError):
        received = None
    return {"message_id": str(msg.get("Message-ID") or "").strip(), "received_on": received,
            "from_address": email.utils.parseaddr(str(msg.get("From") or ""))[1].lower(),
            "subject": str(msg.get("Subject") or ""), "body": _text_of(msg)}


def read_mbox(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise InboxError(f"no such mailbox file: {path}")
    box = mailbox.mbox(str(path), create=False)
    return _frame([parse_message(m.as_bytes()) for m in box])


def read_drop(path: Path) -> pd.DataFrame:
    """A CSV (columns as COLUMNS; `received_on` may be `date`, `from_address` may be `from`) or a JSON
    file holding a list of such objects, or {"replies": [...]}: what a webhook delivers."""
    path = Path(path)
    if not path.is_file():
        raise InboxError(f"no such reply file: {path}")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InboxError(f"{path} is not valid JSON: {exc}") from None
        rows = doc.get("replies") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise InboxError(f"{path}: expected a list of replies or {{\"replies\": [...]}}")
    else:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    out = []
    for r in rows:
        if not isinstance(r, dict):
            raise InboxError(f"{path}: a reply must be an object, got {type(r).__name__}")
        out.append({"message_id": str(r.get("message_id") or "").strip(),
                    "received_on": r.get("received_on") or r.get("date") or None,
                    "from_address": email.utils.parseaddr(str(r.get("from_address") or r.get("from") or ""))[1].lower(),
                    "subject": str(r.get("subject") or ""), "body": str(r.get("body") or "")})
    return _frame(out)


def read_imap(host: str, user: str, password: str, *, port: int = 993, folder: str = "INBOX", ssl: bool = True,
              mark_seen: bool = False) -> pd.DataFrame:
    """Unseen messages of a mailbox folder (read-only unless mark_seen)."""
    import imaplib

    try:
        conn = imaplib.IMAP4_SSL(host, port) if ssl else imaplib.IMAP4(host, port)
    except OSError as exc:
        raise InboxError(f"IMAP {host}:{port}: cannot connect ({exc.__class__.__name__})") from None
    try:
        try:
            conn.login(user, password)
        except imaplib.IMAP4.error:
            raise InboxError(f"IMAP {host}:{port}: login refused for {user}") from None
        typ, _ = conn.select(folder, readonly=not mark_seen)
        if typ != "OK":
            raise InboxError(f"IMAP {host}:{port}: no folder {folder!r}")
        typ, data = conn.search(None, "UNSEEN")
        rows = []
        for num in (data[0] or b"").split():
            typ, parts = conn.fetch(num, "(RFC822)")
            raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
            if raw:
                rows.append(parse_message(raw))
        return _frame(rows)
    finally:
        try:
            conn.logout()
        except Exception:  # noqa: BLE001 - closing a connection that already failed
            pass


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        return df
    missing = df["message_id"].fillna("") == ""
    df.loc[missing, "message_id"] = [
        "<sha256:" + hashlib.sha256(f"{r.from_address}|{r.subject}|{r.body}".encode()).hexdigest()[:32] + ">"
        for r in df[missing].itertuples()]
    df["received_on"] = pd.to_datetime(df["received_on"], errors="coerce").dt.date
    return df


def read_replies(spec: str) -> pd.DataFrame:
    """`spec`: a .mbox file, a .csv or .json drop, or `imap` (ARFLOW_IMAP_HOST, _PORT, _USER,
    _PASSWORD, _FOLDER, _SSL)."""
    import os

    if spec == "imap":
        host = os.environ.get("ARFLOW_IMAP_HOST")
        if not host:
            raise InboxError("--from imap: set ARFLOW_IMAP_HOST (and ARFLOW_IMAP_USER, ARFLOW_IMAP_PASSWORD)")
        return read_imap(host, os.environ.get("ARFLOW_IMAP_USER", ""), os.environ.get("ARFLOW_IMAP_PASSWORD", ""),
                         port=int(os.environ.get("ARFLOW_IMAP_PORT", "993")),
                         folder=os.environ.get("ARFLOW_IMAP_FOLDER", "INBOX"),
                         ssl=os.environ.get("ARFLOW_IMAP_SSL", "true").lower() != "false")
    path = Path(spec)
    if path.suffix.lower() in (".mbox", ".mbx") or (path.is_file() and path.read_bytes()[:5] == b"From "):
        return read_mbox(path)
    return read_drop(path)
