"""Rendered touches: the billing contact by name, the amount and link, and the guardrails on the way out."""


from tasks.touches import outbox_rows
from tests.conftest import AS_OF, customer, invoice, make_source
from tests.pipeline import run


def _rows(tmp_path, policy, invoices, customers):
    out = run(make_source(tmp_path, invoices, customers), AS_OF, policy)
    return outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=AS_OF).set_index("invoice_id")


def test_nudge_names_the_contact_amount_days_and_link(tmp_path, policy):
    rows = _rows(tmp_path, policy, [invoice("I1", due_date="2026-11-18", balance="250.40", invoice_number="A-77")],
                 [customer("C1", billing_contact_name="Sue Court")])
    r = rows.loc["I1"]
    assert r["status"] == "planned" and r["step"] == "nudge"
    assert "Hi Sue Court," in r["body"] and "250.40 USD" in r["body"] and "A-77" in r["subject"]
    assert "https://pay.example.com/I1" in r["body"] and r["recipients"] == "ap@c1.example.com"


def test_another_customers_invoice_in_a_message_blocks_it(tmp_path, policy):
    invoices = [invoice("I1", due_date="2026-11-18", payment_link="https://pay.example.com/inv/20001"),
                invoice("I2", "C2", invoice_number="20001", due_date="2026-12-30")]
    rows = _rows(tmp_path, policy, invoices, [customer("C1"), customer("C2")])
    assert rows.loc["I1", "status"] == "blocked"
    assert rows.loc["I1", "closed_reason"] == "guardrail: other_customer_data"


def test_approval_steps_wait_for_a_decision(tmp_path, policy):
    rows = _rows(tmp_path, policy, [invoice("I1", due_date="2026-10-23", issue_date="2026-09-23")], [customer("C1")])
    assert rows.loc["I1", "step"] == "service_pause_warning" and rows.loc["I1", "status"] == "awaiting_decision"


def test_eml_headers_stay_on_one_line_and_non_ascii_is_encoded(tmp_path):
    import pandas as pd
    from email import policy
    from email.parser import BytesParser

    from tasks.touches import write_eml

    rows = pd.DataFrame([{"channel": "email", "status": "planned", "recipients": "ap@x.example,finance",
                          "subject": "Rechnung Nr. 5 fällig\r\nBcc: evil@example.com", "body": "Grüße\nZeile 2",
                          "idempotency_key": "I1:nudge:email"}])
    assert write_eml(rows, tmp_path, sender="AR <ar@example.com>") == 1
    msg = BytesParser(policy=policy.default).parsebytes((tmp_path / "I1_nudge_email.eml").read_bytes())
    assert msg["Subject"] == "Rechnung Nr. 5 fällig Bcc: evil@example.com" and msg["Bcc"] is None
    assert msg["To"] == "ap@x.example" and msg.get_content() == "Grüße\nZeile 2\n"
