"""Every customer template in every language, read as the customer reads it: dates and money the
customer's way, no English in a German or French message, singular and plural right, the sender's
signature, how to pay and the account number, a first-name greeting or a neutral one, the invoice
PDF linked where the billing system has one."""

import re

import pytest

from tasks.touches import first_name, remittance_of, render, render_message

COMPANY = {"name": "Nordwind Systems GmbH", "signature": ["Hafenstraße 7, 20457 Hamburg", "+49 40 1234 5678"],
           "remittance": {"EUR": "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX",
                          "USD": "ACH 021000021 / 000123456789, Lockbox 12345", "default": "IBAN GB29 NWBK 6016 1331 9268 19"}}
DATES = {"en": "December 1, 2026", "de": "1. Dezember 2026", "fr": "1 décembre 2026"}
# Amounts of each digit count (JPY 0, EUR 2, BHD 3), as each language writes them.
MONEY = {("en", "EUR", "9490.88"): "€9,490.88", ("de", "EUR", "9490.88"): "9.490,88 €",
         ("fr", "EUR", "2130.14"): "2 130,14 €", ("en", "USD", "12345.67"): "$12,345.67",
         ("de", "JPY", "1200000"): "1.200.000 ¥", ("fr", "JPY", "1200000"): "1 200 000 JPY",
         ("en", "BHD", "1000.500"): "BHD1,000.500", ("de", "BHD", "1000.500"): "1.000,500 BHD"}
ENGLISH = {"invoice", "invoices", "overdue", "the", "please", "payment", "your", "pay", "thank", "regards", "hi",  # ("due" is French too: "était due")
           "hello", "account", "past", "suspend", "installment", "reminder", "with", "we", "you", "and", "of"}
SIGN_OFF = {"en": "Accounts Receivable", "de": "Debitorenbuchhaltung", "fr": "Service comptabilité clients"}
NEUTRAL = {"en": "Hello,", "de": "Sehr geehrte Damen und Herren,", "fr": "Madame, Monsieur,"}
BY_NAME = {"en": "Hi Anna,", "de": "Guten Tag Anna,", "fr": "Bonjour Anna,"}


def _plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def _item(step, tone, dpd, language, *, number="A-1", currency="EUR", amount="9490.88", due="2026-12-01",
          contact="Anna Berg", pdf=None, account="K-10042"):
    return {"invoice_id": f"I{number}", "step": step, "step_day": max(dpd, 0), "tone": tone, "needs_approval": False,
            "recipients": "ap@c1.example.com", "invoice_number": number, "due_date": due, "days_past_due": dpd,
            "currency": currency, "amount_minor": 0, "amount": amount, "balance": None, "contact_name": contact,
            "customer_name": "Kunde Eins AG", "segment": "standard", "arr": "0.00", "health": None, "risk_score": 10,
            "escalation": "none", "escalation_reason": None, "paid_count": 3, "avg_days_late": 0.0,
            "late_count_12m": 0, "payment_link": "https://pay.example.com/1", "payment_failed": step == "nudge_failed",
            "language": language, "owner_email": None, "billing_email": "ap@c1.example.com", "tenure_months": 24,
            "customer_credit": None, "credit_notes": None, "po_number": None, "account_number": account,
            "invoice_pdf_url": pdf, "company": COMPANY, "autopay": False}


STEPS = [("pre_due_reminder", "friendly", -3), ("nudge", "friendly", 3), ("follow_up", "friendly", 8),
         ("installment_reminder", "friendly", 1), ("firm_reminder", "firm", 20),
         ("service_pause_warning", "firm", 33), ("final_notice", "escalating", 50)]


def _english_words(text: str) -> set[str]:
    text = re.sub(r"https?://\S+|[\w.+-]+@[\w.-]+", " ", text)
    for line in COMPANY["signature"] + list(COMPANY["remittance"].values()) + [COMPANY["name"], "Kunde Eins AG"]:
        text = text.replace(line, " ")
    return {w for w in re.findall(r"[a-zà-ÿ]+", text.lower())} & ENGLISH


@pytest.mark.parametrize("language", ["en", "de", "fr"])
@pytest.mark.parametrize("step,tone,dpd", STEPS)
@pytest.mark.parametrize("many", [False, True])
def test_every_reminder_in_every_language_reads_right(language, step, tone, dpd, many):
    items = [_item(step, tone, dpd, language)]
    if many:
        items.append(_item(step, tone, dpd + 2, language, number="A-2", due="2026-11-29"))
    subject, body, ctx = render_message("email", items, "Accounts Receivable")
    text = _plain(subject + "\n" + body)
    assert "2026-12-01" not in text
    if step != "installment_reminder":  # the plan's reminder names the plan, not the invoice's date and amount
        assert DATES[language] in text and _plain(MONEY.get((language, "EUR", "9490.88"), "9 490,88 €")) in text
    assert body.startswith(BY_NAME[language]) and body.rstrip().endswith("+49 40 1234 5678")
    assert SIGN_OFF[language] + "\nNordwind Systems GmbH\nHafenstraße 7, 20457 Hamburg" in body
    assert "IBAN DE89 3704 0044 0532 0130 00" in body and "K-10042" in body
    assert "ouverte(s)" not in text and "(suspend)" not in text and "{{" not in text
    if language != "en":
        assert not _english_words(text), (step, _english_words(text))
    if many and step != "installment_reminder":
        count = {"en": "2 ", "de": "2 ", "fr": "2 "}[language]
        assert count in subject or step in ("firm_reminder", "pre_due_reminder", "nudge", "follow_up") and "A-1" in body
        assert "A-2" in body and _plain("29. November 2026" if language == "de" else
                                        "29 novembre 2026" if language == "fr" else "November 29, 2026") in _plain(body)


@pytest.mark.parametrize("language,one,many", [
    ("fr", "est toujours ouverte.", "sont toujours ouvertes"), ("de", "ist Rechnung A-1", "sind die folgenden Rechnungen"),
    ("en", "invoice A-1 for", "these invoices are")])
def test_singular_and_plural(language, one, many):
    single = render_message("email", [_item("nudge", "friendly", 3, language)], "AR")
    double = render_message("email", [_item("nudge", "friendly", 3, language),
                                      _item("nudge", "friendly", 4, language, number="A-2")], "AR")
    assert one in single[1] and many not in single[1]
    assert many in double[1] and "2 " in double[0]


@pytest.mark.parametrize("language,currency,amount", sorted({(k[0], k[1], k[2]) for k in MONEY}))
def test_money_of_each_digit_count_in_the_customer_locale(language, currency, amount):
    body = render_message("email", [_item("firm_reminder", "firm", 20, language, currency=currency, amount=amount)],
                          "AR")[1]
    assert _plain(MONEY[(language, currency, amount)]) in _plain(body)
    how = {"en": "How to pay", "de": "Bankverbindung", "fr": "Coordonnées bancaires"}[language]
    expected = COMPANY["remittance"].get(currency, COMPANY["remittance"]["default"])
    assert f"{how}: {expected}" in body or f"{how} : {expected}" in body


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_receipt_and_payment_plan_in_every_language(language):
    subject, body = render("receipt.j2", {"invoice_number": "A-1", "amount": "2130.14", "currency": "EUR",
                                          "paid_date": "2026-12-01", "sender_name": "AR", "contact_name": "Anna Berg",
                                          "company": COMPANY}, language)
    text = _plain(subject + "\n" + body)
    assert DATES[language] in text and _plain({"en": "€2,130.14", "de": "2.130,14 €", "fr": "2 130,14 €"}[language]) in text
    assert body.startswith(BY_NAME[language]) and SIGN_OFF[language] in body and "IBAN" not in body
    plan = {**_item("payment_plan_proposal", "friendly", 40, language, amount="300.00"),
            "installments": [{"due_on": "2026-12-01", "amount": "100.00"}, {"due_on": "2027-01-01", "amount": "200.00"}],
            "remittance": remittance_of(COMPANY, ["EUR"]), "sender_name": "AR"}
    p_subject, p_body = render("payment_plan.j2", plan, language)
    p_text = _plain(p_subject + "\n" + p_body)
    assert DATES[language] in p_text and {"en": "January 1, 2027", "de": "1. Januar 2027", "fr": "1 janvier 2027"}[language] in p_text
    assert "IBAN DE89" in p_body and "K-10042" in p_body and p_body.startswith(BY_NAME[language])
    if language != "en":
        assert not _english_words(text) and not _english_words(p_text)


@pytest.mark.parametrize("contact,expected", [("Anna Berg", "Anna"), ("Berg, Anna", "Anna"), ("Dr. Anna Berg", "Anna"),
                                              ("Accounts Payable", ""), ("there", ""), ("", ""), (None, ""),
                                              ("ap@c1.example.com", ""), ("J. Berg", ""), ("Buchhaltung", "")])
def test_first_name_of_a_contact(contact, expected):
    assert first_name(contact) == expected


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_a_team_or_no_name_gets_the_neutral_greeting(language):
    for contact in ("Accounts Payable", "there"):
        body = render_message("email", [_item("nudge", "friendly", 3, language, contact=contact)], "AR")[1]
        assert body.startswith(NEUTRAL[language] + "\n")


def test_no_account_number_and_no_company_fall_back_to_the_old_text():
    item = {**_item("nudge", "friendly", 3, "en", account=None)}
    item.pop("company")
    body = render_message("email", [item], "Accounts Receivable")[1]
    assert "account number" not in body and "How to pay" not in body and body.endswith("Thank you,\nAccounts Receivable")


@pytest.mark.parametrize("language,label", [("en", "The invoice as a PDF: "), ("de", "Die Rechnung als PDF: "),
                                            ("fr", "La facture au format PDF : ")])
def test_the_billing_systems_invoice_pdf_is_linked(language, label):
    url = "https://pay.stripe.com/invoice/acct_1/test_x/pdf"
    one = render_message("email", [_item("nudge", "friendly", 3, language, pdf=url)], "AR")[1]
    assert label + url in one
    two = render_message("email", [_item("nudge", "friendly", 3, language, pdf=url),
                                   _item("nudge", "friendly", 4, language, number="A-2", pdf=url + "2")], "AR")[1]
    line = next(x for x in two.splitlines() if "A-2" in x)
    assert url + "2" in line and "PDF" in line


def test_an_attachment_added_since_approval_goes_back_for_approval():
    import json

    from tasks.decisions import approval_changes

    env = {"from": "YourCo Inc. <ar@yourco.example>", "sender": None, "to": ["ap@c1.example.com"], "cc": [],
           "reply_to": "ar@yourco.example", "attachments": []}
    decision = {"kind": "firm_reminder", "context": json.dumps({"proposed_subject": "S", "proposed_text": "B",
                                                                "envelope": env})}
    assert approval_changes(decision, env, "S", "B") == []
    changed = approval_changes(decision, {**env, "attachments": ["statements/C1.pdf"]}, "S", "B")
    assert changed == [{"field": "attachments", "approved": [], "now": ["statements/C1.pdf"]}]
