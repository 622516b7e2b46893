"""Issue 21, items 4 and 5: the guardrail's precision (another customer's invoice numbers and names
only where they stand as references or names) and whole-word own-name scrubbing."""

import pytest

from tasks.guardrails import Directory, check_message


def _check(subject, body, owners, names=(), own_names=(), customer="C1"):
    d = Directory.build(list(owners), list(owners.values()), [n for n, _ in names], [c for _, c in names])
    return check_message(subject, body, customer_id=customer, recipients=["ap@acme.example"], directory=d,
                         own_names=own_names)


# ---- item 4: legitimate mail is not taken for another customer's data --------------------------
@pytest.mark.parametrize("subject,body,owners,names", [
    # another customer holds invoice number 2: a count of invoices is no reference to it
    ("A quick reminder about 2 open invoices", "Hi Pat,\n\nOur records show these invoices are still open.\n"
     "- 10001: 1200.00 USD, due 2026-11-01 (22 days ago)\n- 10002: 80.00 USD, due 2026-11-10 (13 days ago)",
     {"10001": "C1", "10002": "C1", "2": "C2", "13": "C2", "22": "C2", "1200": "C2"}, ()),
    # a customer named Online (or Open, Invoice, Thank) is not every e-mail saying so
    ("A quick reminder about invoice 10001", "Hi Pat,\n\nInvoice 10001 is still open. You can pay online here: "
     "https://pay.example/x\n\nThank you,\nAccounts Receivable",
     {"10001": "C1"}, (("Online", "C2"), ("OPEN", "C3"), ("invoice", "C4"), ("Thank", "C5"))),
    # short numbers that are amounts, days or parts of a date
    ("Invoice 10001", "1,200 USD was due on 2026-11-05, 18 days ago; 3 reminders sent.",
     {"10001": "C1", "1": "C2", "200": "C2", "05": "C2", "18": "C2", "3": "C2", "2026-11-05": "C2"}, ()),
])
def test_counts_common_words_and_amounts_are_not_other_customers_data(subject, body, owners, names):
    v = _check(subject, body, owners, names)
    assert v.ok, v.violations


@pytest.mark.parametrize("body,owners,names", [
    ("Invoice 2 is also open.", {"2": "C2"}, ()),                          # after the word invoice
    ("See inv. 17 and our reference #45.", {"45": "C2"}, ()),              # '#'
    ("Invoices 10001, 17 and 3 are open.", {"10001": "C1", "3": "C2"}, ()),  # a list after 'invoices'
    ("- 17: 120.00 USD, due 2026-11-01", {"17": "C2"}, ()),                # an item of the invoice list
    ("Rechnung 17 ist offen.", {"17": "C2"}, ()),
    ("We also see 20001 on file.", {"20001": "C2"}, ()),                  # long enough to be a reference anywhere
    ("Compare with what Online paid.", {}, (("Online", "C2"),)),           # a one-word name written as one
    ("online ltd paid on time.", {}, (("Online", "C2"),)),                # ... or with a company suffix
    ("Globex Industries paid on time.", {}, (("Globex Industries", "C2"),)),
    ("globex industries, inc. paid.", {}, (("Globex Industries, Inc.", "C2"),)),
])
def test_other_customers_references_and_names_still_block(body, owners, names):
    v = _check("Invoice 10001", body, {"10001": "C1", **owners}, names)
    assert "other_customer_data" in v.violations


def test_a_multi_word_name_matches_whole_words_only():
    names = (("Pay Net", "C2"),)
    assert _check("Invoice 10001", "Please pay network fees.", {"10001": "C1"}, names).ok
    assert not _check("Invoice 10001", "Pay Net paid.", {"10001": "C1"}, names).ok


# ---- item 5: own names are scrubbed as whole words -------------------------------------------
@pytest.mark.parametrize("own,body,rule", [
    (("Al", "Al Corp"), "We will take legal action against you.", "legal_threat"),
    (("e", "Acme"), "This account will be referred to a collection agency.", "collections_or_credit_reporting"),
    (("Sue",), "Hi Sue, our attorney will be in touch.", "legal_threat"),
    (("Ed", "Ed Co"), "Your service will be suspended.", "service_suspension"),
])
def test_own_names_do_not_hide_the_rules(own, body, rule):
    v = _check("Invoice 10001", body, {"10001": "C1"}, own_names=own)
    assert rule in v.violations


def test_own_names_are_still_taken_out_as_names():
    v = _check("Invoice 10001", "Hi Sue Court, invoice 10001 for Courtside Legal Action Ltd is open.",
               {"10001": "C1"}, own_names=("Sue Court", "Courtside Legal Action Ltd", "Sue"))
    assert v.ok, v.violations


# ---- item 4: a blocked message is a decision for a person, and the cadence does not stall unseen
@pytest.mark.slow
def test_a_blocked_message_opens_a_decision_and_its_settlement_frees_the_cadence(tmp_path, policy):
    import datetime as dt

    from connectors.ledger import models as m
    from connectors.ledger.store import Ledger
    from tasks.decisions import open_decisions, settle
    from flows.prefect_tasks import queue_touches
    from tests.conftest import AS_OF, customer, invoice, make_source
    from tests.pipeline import run

    # A true positive: the payment link carries another customer's invoice number.
    invoices = [invoice("I1", due_date="2026-11-18", payment_link="https://pay.example.com/inv/20001"),
                invoice("I2", "C2", invoice_number="20001", due_date="2026-12-30")]
    folder = make_source(tmp_path, invoices, [customer("C1"), customer("C2")])
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    out = run(folder, AS_OF, policy, ledger=ledger)
    counts = queue_touches.fn(out["actions"], out["planned"], ledger, "send", "r1", AS_OF, None, policy)
    assert counts["blocked_by_guardrail"] == 1 and counts["decisions_opened"] == 1
    d = open_decisions(ledger)
    assert d["kind"].tolist() == ["guardrail_blocked"] and d["invoice_ids"].tolist() == ["I1"]
    import json
    context = json.loads(d["context"].iloc[0])
    assert context["blocked"] == "guardrail: other_customer_data" and "20001" in context["proposed_text"]

    later = AS_OF + dt.timedelta(days=2)  # the follow-up is due
    held = run(folder, later, policy, ledger=ledger)["planned"].set_index("invoice_id")
    assert held.loc["I1", "reason"] == "previous_step_not_delivered"  # waits, in the person's queue

    settle(ledger, int(d["id"].iloc[0]), "reject", by="clerk", on=AS_OF, note="wrong link")
    box = ledger.frame(m.Outbox).set_index("invoice_id")
    assert box.loc["I1", "status"] == "rejected" and open_decisions(ledger).empty
    after = run(folder, later, policy, ledger=ledger)
    assert "I1" in set(after["actions"]["invoice_id"])  # the cadence goes on


def test_an_approved_blocked_message_is_queued_with_the_persons_text(tmp_path, policy):
    from connectors.ledger import models as m
    from connectors.ledger.store import Ledger
    from tasks.decisions import open_decisions, settle
    from flows.prefect_tasks import queue_touches
    from tests.conftest import AS_OF, customer, invoice, make_source
    from tests.pipeline import run

    invoices = [invoice("I1", due_date="2026-11-18", payment_link="https://pay.example.com/inv/20001"),
                invoice("I2", "C2", invoice_number="20001", due_date="2026-12-30")]
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    out = run(make_source(tmp_path, invoices, [customer("C1"), customer("C2")]), AS_OF, policy, ledger=ledger)
    queue_touches.fn(out["actions"], out["planned"], ledger, "send", "r1", AS_OF, None, policy)
    decision = int(open_decisions(ledger)["id"].iloc[0])
    settle(ledger, decision, "approve", by="clerk", on=AS_OF, body="Hi, invoice I1 is open.")
    row = ledger.frame(m.Outbox).set_index("invoice_id").loc["I1"]
    assert row["status"] == "queued" and row["body"] == "Hi, invoice I1 is open."
    assert ledger.sendable()["invoice_id"].tolist() == ["I1"]
