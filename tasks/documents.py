"""The billing system's own document of each invoice an e-mail asks for (QuickBooks' invoice PDF,
policy connectors.quickbooks.attach_invoice_pdf), read once when the touch is queued and kept in
the run's folder, so the approver sees the file that will leave and the send attaches exactly it.

Each file lies in a folder named after the first 16 hex digits of its SHA-256
(`<run>/invoices/<digest>/Invoice <number>.pdf`): the path names the bytes, so an approval that
compares paths compares contents, and a file changed after it was approved is refused at send
(tasks.delivery.attach_file)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

DIGEST_CHARS = 16
_UNSAFE = re.compile(r"[^\w .\-]+")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def file_name(invoice_number: str) -> str:
    """The name the customer sees: `Invoice <number>.pdf`, with nothing a file system refuses."""
    safe = _UNSAFE.sub("-", str(invoice_number)).strip(" .-") or "invoice"
    return f"Invoice {safe[:80]}.pdf"


def attach_invoice_pdfs(actions: pd.DataFrame, invoices: pd.DataFrame, fetch, folder,
                        system: str = "the billing system") -> tuple[pd.DataFrame, list[str]]:
    """`actions` with a column `invoice_pdf_file`: for each e-mail touch, the path of its invoice's
    PDF as `fetch(invoice_id)` returns it, written under `folder`. An invoice whose PDF cannot be
    read goes without it (the reminder is not held for a document); the notes say which and why.
    Each invoice is read once however many touches name it."""
    if actions.empty or fetch is None:
        return actions, []
    mail = actions["channel"] == "email"
    ids = sorted(set(actions.loc[mail, "invoice_id"].astype(str)))
    if not ids:
        return actions, []
    number = dict(zip(invoices["invoice_id"].astype(str), invoices["invoice_number"].astype(str)))
    folder = Path(folder)
    files: dict[str, str] = {}
    failed: list[str] = []
    for invoice_id in ids:
        try:
            data = fetch(invoice_id)
        except Exception as exc:  # noqa: BLE001 - a connector's error after its retries: the reminder goes without it
            failed.append(f"{number.get(invoice_id, invoice_id)} ({exc})")
            continue
        where = folder / digest(data)
        where.mkdir(parents=True, exist_ok=True)
        path = where / file_name(number.get(invoice_id, invoice_id))
        path.write_bytes(data)
        files[invoice_id] = str(path)
    notes = [f"{len(files)} invoice PDF(s) read from {system} to go with today's e-mails."] if files else []
    if failed:
        notes.append(f"{len(failed)} invoice PDF(s) could not be read from {system}; those e-mails go without "
                     f"them: {'; '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}")
    column = actions["invoice_id"].astype(str).map(files).where(mail)
    return actions.assign(invoice_pdf_file=column), notes


def verify(path: Path, data: bytes) -> bool:
    """Whether a file kept by attach_invoice_pdfs still holds the bytes its folder names (a file
    outside such a folder is not checked)."""
    name = path.parent.name
    if len(name) != DIGEST_CHARS or not all(ch in "0123456789abcdef" for ch in name):
        return True
    return digest(data) == name
