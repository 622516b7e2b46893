"""Rendered touches: the billing contact by name, the amount and link, and the guardrails on the way out."""


from tasks.touches import outbox_rows
from tests.conftest import AS_OF, customer, invoice, make_source
from tests.pipeline import run


def _rows(tmp_path, policy, invoices, customers, done=()):
    out = run(make_source(tmp_path, invoices, customers), AS_OF, policy, done_keys=done)
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
    rows = _rows(tmp_path, policy, [invoice("I1", due_date="2026-10-23", issue_date="2026-09-23")], [customer("C1")],
                 done=["I1:firm_reminder:email"])
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


def test_status_by_mode_draft_waits_for_everything_send_only_for_approval_steps(tmp_path, policy):
    out = run(make_source(tmp_path, [invoice("I1", due_date="2026-10-23", issue_date="2026-09-23"),
                                     invoice("I2", "C2", due_date="2026-11-18")], [customer("C1"), customer("C2")]),
              AS_OF, policy, done_keys=["I1:firm_reminder:email"])
    for mode, expected in (("draft", {"I1": "awaiting_decision", "I2": "awaiting_decision"}),
                           ("send", {"I1": "awaiting_decision", "I2": "queued"})):
        rows = outbox_rows(out["actions"], out["planned"], mode=mode, run_id="r", as_of=AS_OF)
        assert rows.set_index("invoice_id")["status"].to_dict() == expected
        assert set(rows["mode"]) == {"live"}  # draft and send share one set of keys


def test_one_customer_one_message_at_the_most_advanced_step(tmp_path, policy):
    # Two invoices of one customer due touches today: a nudge (day 5) and a firm reminder (day 23).
    invoices = [invoice("I1", due_date="2026-11-18", invoice_number="A-1", balance="100.00"),
                invoice("I2", due_date="2026-10-31", invoice_number="A-2", balance="200.00"),
                invoice("I3", "C2", due_date="2026-11-18")]
    out = run(make_source(tmp_path, invoices, [customer("C1"), customer("C2")]), AS_OF, policy,
              done_keys=["I2:follow_up:email"])
    rows = outbox_rows(out["actions"], out["planned"], mode="send", run_id="r", as_of=AS_OF)
    mail = rows[rows["channel"] == "email"].set_index("invoice_id")
    assert mail.loc["I1", "message_key"] == mail.loc["I2", "message_key"] != mail.loc["I3", "message_key"]
    assert mail.loc["I1", "body"] == mail.loc["I2", "body"]
    body, subject = mail.loc["I1", "body"], mail.loc["I1", "subject"]
    assert "2 invoices are past due" in subject  # the firm step leads
    assert "A-1: 100.00 USD" in body and "A-2: 200.00 USD" in body
    # The whole message travels in the lane of its most advanced step.
    assert mail.loc["I1", "lane"] == mail.loc["I2", "lane"] == "late"


def test_templates_follow_the_customer_language_or_country(tmp_path, policy):
    invoices = [invoice("I1", due_date="2026-11-18"), invoice("I2", "C2", due_date="2026-11-18"),
                invoice("I3", "C3", due_date="2026-11-18")]
    customers = [customer("C1", country="DE"), customer("C2", country="FR"), customer("C3", country="DE")]
    customers[2]["language"] = "en"  # the customer file's own language wins over the country
    folder = make_source(tmp_path, invoices, customers)
    import csv
    with open(folder / "customers.csv", newline="") as fh:
        data = list(csv.DictReader(fh))
    for r, c in zip(data, customers):
        r["language"] = c.get("language", "")
    with open(folder / "customers.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(data[0]))
        w.writeheader()
        w.writerows(data)
    out = run(folder, AS_OF, policy)
    rows = outbox_rows(out["actions"], out["planned"], mode="send", run_id="r", as_of=AS_OF).set_index("invoice_id")
    assert rows.loc["I1", "language"] == "de" and rows.loc["I1", "body"].startswith("Guten Tag Pat Payer")
    assert rows.loc["I2", "language"] == "fr" and rows.loc["I2", "body"].startswith("Bonjour Pat Payer")
    assert rows.loc["I3", "language"] == "en" and rows.loc["I3", "body"].startswith("Hi Pat Payer")
    assert set(rows["status"]) == {"queued"}  # the German and French texts pass the guardrails too
