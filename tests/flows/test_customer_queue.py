"""Decisions per customer (issue 23, item 9): the queue groups open decisions by customer, ranked by
exposure and risk, each with the whole account; deciding for a customer settles the invoices each
of its decisions covers, and the next run carries them out."""

from __future__ import annotations

import datetime as dt
import json

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from flows.daily_ar import daily_ar
from flows.decisions import form_for
from tasks.decisions import customer_queue, position_markdown
from tests.conftest import customer, invoice, make_source
from tests.cli import in_folder as _run
from tests.flows.helpers import delivered

MON = dt.date(2026, 11, 23)


def test_the_queue_by_customer_with_the_whole_account_and_deciding_for_one(env, smtp):  # noqa: F811
    src = make_source(env / "src", [
        invoice("I1", due_date="2026-11-18", balance="100.00"), invoice("I2", due_date="2026-10-31", balance="200.00"),
        invoice("I3", "C2", due_date="2026-10-21", balance="8000.00", amount="8000.00"),
        invoice("I4", "C2", due_date="2026-11-18", balance="500.00"),
        invoice("I5", "C2", due_date="2026-11-10", balance="700.00"),
        invoice("I6", "C3", due_date="2026-11-18", balance="50.00")],
        [customer("C1"), customer("C2", segment="strategic", name="Big Co"), customer("C3")])
    delivered(env, "I3", "C2", "firm_reminder", dt.date(2026, 11, 13))
    url = f"sqlite:///{env / 'ledger.db'}"
    ledger = Ledger(url)
    ledger.insert_rows(m.Dispute, [{"invoice_id": "I5", "customer_id": "C2", "opened_on": dt.date(2026, 11, 20),
                                    "reason": "wrong quantity"}])
    ledger.insert_rows(m.CustomerCredit, [{"customer_id": "C2", "payment_id": "P1", "amount_minor": 4000,
                                           "currency": "USD", "created_on": dt.date(2026, 11, 20)}])
    s = daily_ar(as_of=MON, source=f"csv:{src}", mode="draft")
    assert s["decision_customers"] == 3 and not smtp.messages
    p = _run(["queue", "--json"], env, ARFLOW_DB_URL=url)
    assert p.returncode == 0, p.stderr
    q = json.loads(p.stdout)
    ranked = [c["customer_id"] for c in q["customers"]]
    assert ranked == ["C2", "C1", "C3"]  # the most money overdue at the highest risk first
    big = q["customers"][0]
    assert big["exposure"] == {"USD": "9200.00"} and big["overdue"] == {"USD": "9200.00"}
    assert big["oldest"]["invoice_id"] == "I3" and big["oldest"]["days_past_due"] == 33
    assert big["credits"] == {"USD": "40.00"} and [d["invoice_id"] for d in big["disputes"]] == ["I5"]
    assert big["last_touches"] == [{"on": "2026-11-13", "step": "firm_reminder", "channel": "email"}]
    assert big["risk_score"] > 0 and big["priority"] > q["customers"][1]["priority"]
    assert {i for d in q["customers"][1]["decisions"] for i in d["invoices"]} == {"I1", "I2"}
    assert q["open"] == len(q["decisions"]) == sum(len(c["decisions"]) for c in q["customers"])
    page = open(s["dashboard"], encoding="utf-8").read()  # the day's dashboard ranks them the same way
    assert "Decisions by customer (3)" in page
    assert page.index("Big Co (C2)") < page.index("Customer C1 (C1)") < page.index("Customer C3 (C3)")
    text = _run(["queue"], env, ARFLOW_DB_URL=url).stdout
    assert text.splitlines()[0].startswith("1. Big Co (C2, strategic): owed 9200.00 USD, overdue 9200.00 USD")
    assert "credits 40.00 USD; 1 dispute(s); last: 2026-11-13 firm_reminder" in text

    # The review form shows the same account above the answer.
    decision = ledger.frame(m.Decision, m.Decision.customer_id == "C2").iloc[0].to_dict()
    position = position_markdown(customer_queue(ledger)[0])
    form = form_for(decision, position=position)
    assert "Big Co: the whole account (rank 1 in the queue)" in form._description
    assert "**Disputes:** I5 since 2026-11-20" in form._description

    # One verdict for a customer settles every decision of theirs, and the next run sends what it covers.
    p = _run(["decide", "--customer", "C1", "approve", "--by", "dana"], env, ARFLOW_DB_URL=url)
    assert p.returncode == 0, p.stderr
    c1 = ledger.frame(m.Decision, m.Decision.customer_id == "C1")
    assert set(c1["status"]) == {"approved"} and set(c1["decided_by"]) == {"dana"}
    assert set(ledger.frame(m.Decision, m.Decision.customer_id != "C1")["status"]) == {"open"}
    daily_ar(as_of=dt.date(2026, 11, 24), source=f"csv:{src}", mode="send")
    (msg,) = smtp.to("ap@c1.example.com")
    assert "N-I1" in msg.get_content() and "N-I2" in msg.get_content()
    assert not smtp.to("ap@c2.example.com") and not smtp.to("ap@c3.example.com")
