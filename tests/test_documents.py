"""The invoice PDFs an e-mail carries (tasks.documents): one read per invoice, kept under a folder
that names their bytes, listed in what the approver sees, refused at send when changed since."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pandas as pd
import pytest

from tasks import documents
from tasks.delivery import SendError, attach_file


def _actions():
    return pd.DataFrame({"invoice_id": ["I1", "I1", "I2", "I3"], "channel": ["email", "slack", "email", "email"],
                         "customer_id": ["C1", "C1", "C1", "C2"]})


INVOICES = pd.DataFrame({"invoice_id": ["I1", "I2", "I3"], "invoice_number": ["1036", "A/77", "9"]})


def test_each_emailed_invoice_gets_its_pdf_once_and_a_failure_is_a_note(tmp_path):
    calls = []

    def fetch(invoice_id):
        calls.append(invoice_id)
        if invoice_id == "I3":
            raise RuntimeError("QuickBooks: invoice PDF I3 failed: HTTP 503")
        return b"%PDF-1.4 " + invoice_id.encode()

    out, notes = documents.attach_invoice_pdfs(_actions(), INVOICES, fetch, tmp_path, system="quickbooks")
    assert calls == ["I1", "I2", "I3"]           # once each, e-mails only
    files = out["invoice_pdf_file"].tolist()
    assert pd.isna(files[1]) and pd.isna(files[3])   # the Slack touch; the PDF that could not be read
    first = Path(files[0])
    assert first.name == "Invoice 1036.pdf" and first.read_bytes() == b"%PDF-1.4 I1"
    assert first.parent.name == documents.digest(b"%PDF-1.4 I1")
    assert Path(files[2]).name == "Invoice A-77.pdf"
    assert notes[0].startswith("2 invoice PDF(s) read from quickbooks")
    assert "1 invoice PDF(s) could not be read" in notes[1] and "9 (QuickBooks: invoice PDF I3 failed" in notes[1]


def test_a_pdf_changed_after_approval_is_not_sent(tmp_path):
    out, _ = documents.attach_invoice_pdfs(_actions().iloc[:1], INVOICES, lambda i: b"%PDF-1.4 ok", tmp_path)
    path = out["invoice_pdf_file"].iloc[0]
    msg = EmailMessage()
    msg.set_content("hello")
    attach_file(msg, path)
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == "Invoice 1036.pdf" and part.get_content() == b"%PDF-1.4 ok"
    Path(path).write_bytes(b"%PDF-1.4 edited")
    with pytest.raises(SendError, match="changed after it was queued and approved"):
        attach_file(EmailMessage(), path)
    Path(path).unlink()
    with pytest.raises(SendError, match="missing: Invoice 1036.pdf"):
        attach_file(EmailMessage(), path)


def test_the_approver_sees_every_file_of_the_message_and_the_eml_lists_them(tmp_path):
    import json

    from tasks.touches import message_envelope, write_eml

    rows = pd.DataFrame({"idempotency_key": ["I1:nudge:email", "I2:nudge:email"], "message_key": ["C1:d:email"] * 2,
                         "channel": ["email"] * 2, "status": ["planned"] * 2, "recipients": ["ap@c1.example"] * 2,
                         "sender": [None, None], "subject": ["s", "s"], "body": ["b", "b"],
                         "context": [json.dumps({"invoice_pdf_file": "/r/invoices/aa/Invoice 1.pdf",
                                                 "statement": "/r/statements/C1.pdf"}),
                                     json.dumps({"invoice_pdf_file": "/r/invoices/bb/Invoice 2.pdf"})]})
    env = message_envelope(rows, "ar@yourco.example")
    assert env["attachments"] == ["/r/invoices/aa/Invoice 1.pdf", "/r/invoices/bb/Invoice 2.pdf", "/r/statements/C1.pdf"]
    assert write_eml(rows, tmp_path, sender="ar@yourco.example") == 1
    text = next(tmp_path.glob("*.eml")).read_text()
    assert text.count("X-Arflow-Attachment:") == 3 and "Invoice 2.pdf" in text
