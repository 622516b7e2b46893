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
    assert "Hi Sue," in r["body"] and "$250.40" in r["body"] and "A-77" in r["subject"]
    assert "https://pay.example.com/I1" in r["body"] and r["recipients"] == "ap@c1.example.com"


def test_another_customers_invoice_in_a_message_blocks_it(tmp_path, policy):
    invoices = [invoice("I1", due_date="2026-11-18", payment_link="https://pay.example.com/inv/20001"),
                invoice("I2", "C2", invoice_number="20001", due_date="2026-12-30")]
    rows = _rows(tmp_path, policy, invoices, [customer("C1"), customer("C2")])
    assert rows.loc["I1", "status"] == "blocked"
    assert rows.loc["I1", "closed_reason"] == "guardrail: other_customer_data"


def test_the_companys_own_remittance_numbers_are_not_another_customers_invoice(tmp_path, policy):
    # The demo's lockbox is 12345 and another customer has invoice 12345: the company's own line is
    # not that invoice (105 of 365 demo messages were blocked for it), but the number anywhere else is.
    remit = policy.company.remittance["USD"]
    assert "12345" in remit
    invoices = [invoice("I1", due_date="2026-11-18"), invoice("I2", "C2", invoice_number="12345", due_date="2026-12-30")]
    out = run(make_source(tmp_path, invoices, [customer("C1"), customer("C2")]), AS_OF, policy)
    rows = outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=AS_OF,
                       policy=policy).set_index("invoice_id")
    assert rows.loc["I1", "status"] == "planned" and remit in rows.loc["I1", "body"]
    leaky = [invoice("I1", due_date="2026-11-18", payment_link="https://pay.example.com/inv/12345"), invoices[1]]
    out = run(make_source(tmp_path / "b", leaky, [customer("C1"), customer("C2")]), AS_OF, policy)
    rows = outbox_rows(out["actions"], out["planned"], mode="dry-run", run_id="r", as_of=AS_OF,
                       policy=policy).set_index("invoice_id")
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
    assert "A-1: $100.00" in body and "A-2: $200.00" in body
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
    assert rows.loc["I1", "language"] == "de" and rows.loc["I1", "body"].startswith("Guten Tag Pat,")
    assert rows.loc["I2", "language"] == "fr" and rows.loc["I2", "body"].startswith("Bonjour Pat,")
    assert rows.loc["I3", "language"] == "en" and rows.loc["I3", "body"].startswith("Hi Pat,")
    assert set(rows["status"]) == {"queued"}  # the German and French texts pass the guardrails too


def _item(step, tone, days_past_due, *, language, number="A-1", due="2026-11-13"):
    return {"invoice_id": f"I{number}", "step": step, "step_day": days_past_due, "tone": tone, "needs_approval": False,
            "recipients": "ap@c1.example.com", "invoice_number": number, "due_date": due,
            "days_past_due": days_past_due, "currency": "EUR", "amount_minor": 949088, "amount": "9490.88",
            "balance": None, "contact_name": "Pat", "customer_name": "Customer C1", "segment": "standard",
            "arr": "50000.00", "health": None, "risk_score": 40, "escalation": "none", "escalation_reason": None,
            "paid_count": 3, "avg_days_late": 2.0, "late_count_12m": 1, "payment_link": "https://pay.example.com/1",
            "payment_failed": False, "language": language, "owner_email": None, "billing_email": "ap@c1.example.com",
            "tenure_months": 24, "customer_credit": None, "credit_notes": None}


import pytest  # noqa: E402


@pytest.mark.parametrize("language", ["en", "de", "fr"])
@pytest.mark.parametrize("step,tone", [("nudge", "friendly"), ("follow_up", "friendly"), ("firm_reminder", "firm"),
                                       ("service_pause_warning", "firm"), ("final_notice", "escalating")])
def test_a_customer_message_says_dates_not_day_counts_that_go_stale(step, tone, language):
    """Text approved on Friday and sent on Monday must still be true: the same invoices render the
    same words 8 and 11 days after the due date, and the due date is in them."""
    from tasks.touches import render_message

    for many in (False, True):
        def items(days):
            out = [_item(step, tone, days, language=language)]
            return out + [_item(step, tone, days + 5, language=language, number="A-2", due="2026-11-08")] if many else out
        friday = render_message("email", items(8), "Accounts Receivable")[:2]
        monday = render_message("email", items(11), "Accounts Receivable")[:2]
        assert friday == monday, (step, language, many)
        written = {"en": "November 13, 2026", "de": "13. November 2026", "fr": "13 novembre 2026"}[language]
        assert written in friday[1] or written in friday[0]


def test_french_and_german_wording_has_no_leftovers():
    from tasks.touches import render_message

    one = render_message("email", [_item("nudge", "friendly", 8, language="fr")], "AR")[1]
    many = render_message("email", [_item("nudge", "friendly", 8, language="fr"),
                                     _item("nudge", "friendly", 9, language="fr", number="A-2")], "AR")[1]
    assert "ouverte(s)" not in one + many and "est toujours ouverte." in one and "sont toujours ouvertes" in many
    pause = render_message("email", [_item("service_pause_warning", "firm", 33, language="de")], "AR")[1]
    assert "(suspend)" not in pause and "aussetzen." in pause


@pytest.mark.parametrize("language,marker", [("en", "(on a payment plan)"), ("de", "(im Zahlungsplan)"),
                                             ("fr", "(plan de paiement)")])
def test_an_invoice_on_a_payment_plan_is_never_merged_into_a_harder_message(language, marker):
    """The plan's instalment and a pause warning on another invoice, the same day: the warning asks
    for the other invoice only and lists the plan's invoice as on the plan."""
    from tasks.touches import lead_index, render_message

    plan = _item("installment_reminder", "friendly", 40, language=language, number="P-9", due="2026-10-14")
    plan["step_day"] = 99  # however late, the plan's touch never leads a message it is merged into
    pause = _item("service_pause_warning", "firm", 33, language=language, number="W-1", due="2026-10-21")
    subject, body, ctx = render_message("email", [plan, pause], "AR")
    assert ctx["step"] == "service_pause_warning" and [i["invoice_number"] for i in ctx["invoices"]] == ["W-1"]
    assert lead_index([plan, pause]) == 1
    assert "W-1" in subject and "P-9" not in subject
    warning, _, rest = body.partition("P-9")
    assert "W-1" in warning and rest  # the plan's invoice only in the account's list, after the warning
    line = next(x for x in body.splitlines() if "P-9" in x)
    assert (marker or "") in line and line.strip().startswith("- P-9")
    alone = render_message("email", [plan], "AR")[2]
    assert alone["step"] == "installment_reminder"  # on its own, its reminder as before


def test_a_past_due_message_counts_only_what_is_past_due():
    """A firm reminder for one overdue invoice and a pre-due reminder for another on the same day:
    the subject says one invoice, not "2 invoices are past due", and the other is listed as not yet due."""
    from tasks.touches import render_message

    due_today = _item("pre_due_reminder", "friendly", 0, language="en", number="D-0", due="2026-11-23")
    late = _item("firm_reminder", "firm", 23, language="en", number="L-1", due="2026-10-31")
    subject, body, ctx = render_message("email", [due_today, late], "AR")
    assert subject == "Invoice L-1 was due on October 31, 2026" and [i["invoice_number"] for i in ctx["invoices"]] == ["L-1"]
    assert "- D-0: €9,490.88, due November 23, 2026 (not yet due)" in body
    fr = render_message("email", [{**due_today, "language": "fr"}, {**late, "language": "fr"}], "AR")[1]
    assert "(pas encore échue)" in fr


def test_the_dry_run_eml_has_the_envelope_the_send_would_use(tmp_path):
    """The .eml a person opens in a dry run carries the same From, Sender, To, Cc and Reply-To as
    the real send (connectors.messaging.envelope), the CFO in Cc rather than in To."""
    import pandas as pd
    from email import policy
    from email.parser import BytesParser

    from connectors.messaging import compose, envelope
    from tasks.touches import write_eml

    rows = pd.DataFrame([{"channel": "email", "status": "awaiting_decision", "subject": "S", "body": "B",
                          "recipients": "ap@x.example,cfo@x.example", "sender": "owner@yourco.example",
                          "idempotency_key": "I1:service_pause_warning:email", "message_key": "C1:2026-11-23:email"}])
    write_eml(rows, tmp_path, sender="ar@yourco.example", reply_to="ar-inbox@yourco.example")
    eml = BytesParser(policy=policy.default).parsebytes((tmp_path / "C1_2026-11-23_email.eml").read_bytes())
    env = envelope("ap@x.example,cfo@x.example", "owner@yourco.example", "ar@yourco.example", "ar-inbox@yourco.example")
    sent = compose(sender=env["from"], to=env["to"], cc=env["cc"], subject="S", body="B", key="k",
                   sender_on_behalf=env["sender"], reply_to=env["reply_to"])
    for h in ("From", "Sender", "To", "Cc", "Reply-To", "List-Unsubscribe"):
        assert eml[h] == sent[h], h
    assert eml["Cc"] == "cfo@x.example" and eml["Reply-To"] == "ar-inbox@yourco.example"


@pytest.mark.parametrize("language,words", [("en", "charged automatically"), ("de", "automatisch"),
                                            ("fr", "prélevé automatiquement")])
def test_an_autopay_customer_gets_no_payment_link_before_the_charge(tmp_path, policy, language, words):
    """The card on file pays at the due date: a pre-due reminder with a "pay online" link invites a
    second payment. It says the charge will happen instead; once past due (the charge failed), the link is back."""
    country = {"en": "US", "de": "DE", "fr": "FR"}[language]
    rows = _rows(tmp_path, policy, [invoice("I1", due_date="2026-11-26", autopay="true"),
                                    invoice("I2", "C2", due_date="2026-11-26")],
                 [customer("C1", country=country), customer("C2", country=country)])
    auto, manual = rows.loc["I1"], rows.loc["I2"]
    assert auto["step"] == manual["step"] == "pre_due_reminder"
    assert "https://pay.example.com/I1" not in auto["body"] and words in auto["body"]
    assert "https://pay.example.com/I2" in manual["body"] and words not in manual["body"]


@pytest.mark.parametrize("language,currency,amount,written", [
    ("en", "USD", "12345.67", "$12,345.67"), ("de", "EUR", "9490.88", "9.490,88\xa0€"),
    ("fr", "EUR", "2130.14", "2\u202f130,14\xa0€"), ("en", "JPY", "1200000", "¥1,200,000"),
    ("de", "KWD", "1000.125", "1.000,125\xa0KWD"), ("fr", "USD", "5.00", "5,00\xa0$US"),
])
def test_money_is_written_the_customers_way_in_every_template(language, currency, amount, written):
    """Every customer template, in each language, writes amounts in the language's convention with
    the currency's own digits (none for yen, three for dinars)."""
    from tasks.touches import render_message

    for step, tone in (("pre_due_reminder", "friendly"), ("nudge", "friendly"), ("firm_reminder", "firm"),
                       ("final_notice", "escalating")):
        one = {**_item(step, tone, 5, language=language), "currency": currency, "amount": amount}
        two = {**one, "invoice_id": "I2", "invoice_number": "A-2"}
        for items in ([one], [one, two]):
            body = render_message("email", items, "AR")[1]
            assert written in body, (step, len(items), body)
            assert f"{amount} {currency}" not in body


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_the_accounts_list_is_set_apart_from_the_closing_line(language):
    from tasks.touches import render_message

    item = _item("nudge", "friendly", 5, language=language)
    item["also_open"] = [{"invoice_id": "X", "invoice_number": "B-7", "currency": "EUR", "amount": "10.00",
                          "due_date": "2026-10-01", "days_past_due": 40, "review": "payment promised"}]
    body = render_message("email", [item], "AR")[1]
    line = next(x for x in body.splitlines() if "B-7" in x)
    after = body.splitlines()[body.splitlines().index(line) + 1]
    assert after == "", body  # a blank line before the closing sentence, in every language


@pytest.mark.parametrize("country,words", [("US", "(PO 4500012345)"), ("DE", "(Bestellnr. 4500012345)"),
                                           ("FR", "(bon de commande 4500012345)")])
@pytest.mark.slow
def test_the_customers_purchase_order_stands_beside_our_invoice_number(tmp_path, policy, country, words):
    """AP teams match an invoice by their own PO number: where the invoice has one, every message
    names it beside ours, alone or in the list; where it has none, nothing is added."""
    rows = _rows(tmp_path, policy, [invoice("I1", due_date="2026-11-18", po_number="4500012345"),
                                    invoice("I2", "C2", due_date="2026-11-18"),
                                    invoice("I3", "C3", due_date="2026-11-18", po_number="4500012345"),
                                    invoice("I4", "C3", due_date="2026-11-16")],
                 [customer(c, country=country) for c in ("C1", "C2", "C3")])
    assert words in rows.loc["I1", "body"] and "N-I1 " + words in rows.loc["I1", "body"]
    assert "(PO" not in rows.loc["I2", "body"] and "(Bestell" not in rows.loc["I2", "body"]
    assert "- N-I3 " + words in rows.loc["I3", "body"] and rows.loc["I3", "body"].count(words) == 1
    labelled = _rows(tmp_path / "b", policy, [invoice("I5", due_date="2026-11-18", po_number="PO-7781")],
                     [customer("C1", country=country)])
    assert "N-I5 (PO-7781)" in labelled.loc["I5", "body"]  # already labelled: not "PO PO-7781"


def test_a_message_listing_several_invoices_gives_their_total_per_currency(tmp_path, policy):
    invoices = [invoice("I1", due_date="2026-11-18", balance="250.40", invoice_number="A-1"),
                invoice("I2", due_date="2026-11-18", balance="10.30", invoice_number="A-2"),
                invoice("I3", due_date="2026-11-18", balance="99.99", invoice_number="A-3", currency="EUR")]
    rows = _rows(tmp_path, policy, invoices, [customer("C1")])
    body = rows.loc["I1", "body"]
    assert rows["message_key"].nunique() == 1 and "Total: $260.70" in body and "Total: €99.99" in body
    one = _rows(tmp_path / "one", policy, invoices[:1], [customer("C1")])
    assert "Total" not in one.loc["I1", "body"]   # a list of one needs none
