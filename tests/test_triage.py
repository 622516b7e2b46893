"""Reply triage: a recorded mailbox of replies to reminders, each class's effect in the ledger, the
model through the real SDK against the fake API, an injected instruction that changes nothing
beyond its class, and nothing recorded twice."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from arflow.config import ROOT
from connectors.inbox import InboxError, read_drop, read_mbox, read_replies
from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from connectors.llm import Claude
from tasks.triage import classify_rules, triage
from tests.conftest import customer, invoice
from connectors.fake_anthropic import FakeAnthropic

AS_OF = dt.date(2026, 11, 23)
MBOX = ROOT / "tests" / "fixtures" / "replies.mbox"
EXPECTED = ["paid", "promise_to_pay", "dispute", "wrong_contact", "out_of_office", "complaint", "refund_request",
            "legal_threat", "question", "question", "question"]


def portfolio():
    customers = pd.DataFrame([customer(f"C{i}", owner_ae_email=f"ae{i}@yourco.example") for i in range(1, 11)])
    invoices = pd.DataFrame([invoice(f"I{i}", f"C{i}", due_date="2026-11-13") for i in range(1, 11)]
                            + [invoice("I2b", "C2", due_date="2026-10-30", invoice_number="N-I2b")])
    return invoices, customers


def run(ledger, llm=None, replies=None):
    invoices, customers = portfolio()
    replies = read_mbox(MBOX) if replies is None else replies
    items, counts = triage(replies, invoices, customers, set(ledger.replies()["message_id"]), as_of=AS_OF,
                           country="US", finance="finance@yourco.example", llm=llm)
    counts["recorded"] = ledger.record_replies(items)
    return items, counts


def test_each_class_has_its_effect_in_the_ledger(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    items, counts = run(ledger)
    assert [it["reply"]["category"] for it in items] == EXPECTED
    assert counts["recorded"] == 11 and counts["unmatched"] == 1 and counts["flagged"] == 1
    stops = ledger.stop_records(AS_OF)
    pauses = stops["pauses"].set_index("customer_id")
    # paid: the named invoice is paused five business days (Thanksgiving skipped), never marked paid
    assert pauses.loc["C1", "invoice_id"] == "I1" and pauses.loc["C1", "until"] == dt.date(2026, 12, 1)
    # promise with its date, on the invoice named (not the customer's other invoice)
    p = ledger.frame(m.PromiseToPay)
    assert list(zip(p["invoice_id"], p["promised_date"])) == [("I2", dt.date(2026, 12, 4))]
    # dispute with the amount stated, and the owner told
    d = ledger.frame(m.Dispute)
    assert list(zip(d["invoice_id"], d["amount_minor"], d["currency"])) == [("I3", 25000, "USD")]
    tasks = ledger.frame(m.OwnerTask)
    assert set(tasks.loc[tasks["customer_id"] == "C3", "owner"]) == {"ae3@yourco.example"}
    # wrong contact: paused, the owner asked to update the CRM with the address given
    t4 = tasks.loc[tasks["customer_id"] == "C4", "subject"].iloc[0]
    assert "jane.doe@c4.example.com" in t4 and pd.isna(pauses.loc["C4", "invoice_id"])
    # out of office until the return date
    assert pauses.loc["C5", "until"] == dt.date(2026, 12, 7)
    # legal threat: 30 days of silence, finance and the owner told
    assert pauses.loc["C8", "until"] == AS_OF + dt.timedelta(days=30)
    assert set(tasks.loc[tasks["customer_id"] == "C8", "owner"]) == {"finance@yourco.example", "ae8@yourco.example"}
    # refund request goes to finance; the unknown sender to finance too
    assert set(tasks.loc[tasks["customer_id"] == "C7", "owner"]) == {"finance@yourco.example"}
    assert tasks["customer_id"].isna().sum() == 1
    # every reply is in exactly one row, with an audit entry
    assert len(ledger.replies()) == 11
    audit = ledger.frame(m.AuditLog)
    assert (audit["action"] == "reply.triaged").sum() == 11


def test_an_instruction_in_a_reply_changes_nothing_beyond_its_class(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    run(ledger)
    r = ledger.replies().set_index("customer_id").loc["C10"]
    assert r["category"] == "question" and r["flagged"] == "instructions_in_reply"
    # Not paid, not paused, not promised, no dispute: a person is asked to read it.
    assert "C10" not in set(ledger.frame(m.Pause)["customer_id"])
    assert "I10" not in set(ledger.frame(m.PromiseToPay)["invoice_id"]) | set(ledger.frame(m.Dispute)["invoice_id"])
    task = ledger.frame(m.OwnerTask).set_index("customer_id").loc["C10"]
    assert "tried to instruct the system" in task["subject"]


def test_the_same_replies_twice_are_recorded_once(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    run(ledger)
    items, counts = run(ledger)
    assert items == [] and counts == {"new": 0, "recorded": 0}
    assert len(ledger.frame(m.Pause)) == 7 and len(ledger.replies()) == 11


def test_the_model_classifies_and_its_word_is_bounded_by_the_class(tmp_path):
    def obeys_the_injection(request, user):
        # A model fooled by the reply: it calls the injection "paid" and says no instruction was found.
        from connectors.fake_anthropic import answer_triage

        out = answer_triage(request, user)
        for r in out["replies"]:
            if "N-I10" in json.dumps(request) and r["reply_id"] == "9":
                r.update(category="paid", instructions_found=False)
        return out

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    with FakeAnthropic({"classify_replies": obeys_the_injection}) as fake:
        settings = ledger and __import__("arflow.policy", fromlist=["x"]).load_policy(ROOT / "policy.yaml").llm
        llm = Claude.connect(settings, api_key="k", base_url=fake.url, as_of=AS_OF)
        items, counts = run(ledger, llm)
    assert counts["classifier"] == {"model": 11, "rules": 0, "rules_fallback": 0}
    assert fake.requests[0]["model"] == "claude-haiku-4-5"
    assert [it["reply"]["category"] for it in items][:9] == EXPECTED[:9]
    r10 = items[9]["reply"]
    # The rules' instruction check holds whatever the model says; "paid" only pauses, never closes.
    assert r10["category"] == "paid" and r10["flagged"] == "instructions_in_reply"
    assert [p["until"] for p in items[9]["effects"].pauses] == [dt.date(2026, 12, 1)]
    assert not items[9]["effects"].promises and not items[9]["effects"].disputes
    assert llm.calls[0]["job"] == "triage" and llm.calls[0]["prompt_version"] == "triage-2026.11-1"


def test_an_invalid_model_answer_falls_back_to_the_rules(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    bad = {"classify_replies": lambda req, user: {"replies": [{"reply_id": "0", "category": "marked_paid"}]}}
    with FakeAnthropic(bad) as fake:
        from arflow.policy import load_policy

        llm = Claude.connect(load_policy(ROOT / "policy.yaml").llm, api_key="k", base_url=fake.url, as_of=AS_OF)
        items, counts = run(ledger, llm)
    assert counts["classifier"]["rules_fallback"] == 11
    assert [it["reply"]["category"] for it in items] == EXPECTED
    assert llm.calls[0]["outcome"] == "invalid"


def test_a_json_drop_reads_like_the_mailbox_and_bad_files_say_why(tmp_path):
    drop = tmp_path / "replies.json"
    drop.write_text(json.dumps({"replies": [
        {"message_id": "<w1@hook>", "date": "2026-11-23", "from": "Pat <AP@c2.example.com>",
         "subject": "Re: N-I2", "body": "We'll pay on 4 December 2026."},
        {"date": "2026-11-23", "from": "ap@c9.example.com", "subject": "question", "body": "Bank details?"}]}))
    df = read_drop(drop)
    assert list(df["from_address"]) == ["ap@c2.example.com", "ap@c9.example.com"]
    assert df["message_id"].iloc[1].startswith("<sha256:")  # stable: the same reply twice is one reply
    assert read_drop(drop)["message_id"].iloc[1] == df["message_id"].iloc[1]
    c = classify_rules(df["subject"].iloc[0], df["body"].iloc[0])
    assert c["category"] == "promise_to_pay" and c["date"] == dt.date(2026, 12, 4)
    csv = tmp_path / "replies.csv"
    pd.DataFrame([{"message_id": "<c1>", "received_on": "2026-11-23", "from_address": "x@y.example",
                   "subject": "s", "body": "b"}]).to_csv(csv, index=False)
    assert read_replies(str(csv))["message_id"].tolist() == ["<c1>"]
    assert len(read_replies(str(MBOX))) == 11
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InboxError, match="not valid JSON"):
        read_drop(tmp_path / "bad.json")
    with pytest.raises(InboxError, match="set ARFLOW_IMAP_HOST"):
        read_replies("imap")


def test_imap_reads_the_unseen_replies_and_a_wrong_login_says_so(tmp_path):
    from connectors.inbox import read_imap
    from tests.fake_imap import FakeImap

    with FakeImap(MBOX) as server:
        df = read_imap("127.0.0.1", "ar@yourco.example", "secret", port=server.port, ssl=False)
        assert list(df["message_id"]) == list(read_mbox(MBOX)["message_id"])
        assert "EXAMINE" in server.commands and not server.seen  # read-only by default
        # The same mailbox through the flow's reader, configured from the environment.
        ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
        items, counts = run(ledger, replies=df)
        assert [it["reply"]["category"] for it in items] == EXPECTED
        read_imap("127.0.0.1", "ar@yourco.example", "secret", port=server.port, ssl=False, mark_seen=True)
        assert server.seen == set(range(1, 12))
        assert read_imap("127.0.0.1", "ar@yourco.example", "secret", port=server.port, ssl=False).empty
        with pytest.raises(InboxError, match="login refused"):
            read_imap("127.0.0.1", "ar@yourco.example", "wrong", port=server.port, ssl=False)
        with pytest.raises(InboxError, match="no folder"):
            read_imap("127.0.0.1", "ar@yourco.example", "secret", port=server.port, ssl=False, folder="Archive")
    with pytest.raises(InboxError, match="cannot connect"):
        read_imap("127.0.0.1", "u", "p", port=server.port, ssl=False)


REPLIES_DE_FR = [  # (subject, body, class, date)
    ("Re: Facture N-I1", "Bonjour, nous contestons la facture N-I1 : le montant est erroné.", "dispute", None),
    ("Abwesenheitsnotiz: Rechnung N-I2", "Ich bin bis 07.12.2026 nicht im Büro.", "out_of_office", dt.date(2026, 12, 7)),
    ("Réponse automatique", "Je suis absente du bureau, de retour le 4 décembre 2026.", "out_of_office",
     dt.date(2026, 12, 4)),
    ("AW: Rechnung N-I4", "Guten Tag, wir werden die Rechnung bis zum 15. Dezember 2026 überweisen.", "promise_to_pay",
     dt.date(2026, 12, 15)),
    ("Re: facture", "Le virement a été effectué hier.", "paid", None),
    ("AW: Mahnung", "Bitte tragen Sie uns aus, keine Mahnungen mehr an diese Adresse.", "opt_out", None),
    ("unsubscribe", "", "opt_out", None),
    ("Re: Rechnung", "Ich bin nicht mehr zuständig, bitte wenden Sie sich an buchhaltung@c7.example.com", "wrong_contact",
     None),
    ("Re: facture N-I8", "Sans réponse de votre part, nous saisirons le tribunal.", "legal_threat", None),
    ("Re: Rechnung N-I9", "Können Sie mir bitte eine Kopie der Rechnung schicken?", "question", None),
]


@pytest.mark.parametrize("subject,body,category,date", REPLIES_DE_FR)
def test_the_rules_read_german_and_french_replies(subject, body, category, date):
    got = classify_rules(subject, body)
    assert got["category"] == category and got["date"] == date


def test_an_unsubscribe_reply_stops_the_reminders_whatever_the_model_says(tmp_path):
    """"Bitte keine Mahnungen mehr": an opt-out stop record (as `arflow opt-out` writes) and the owner
    told, even where the model called it a question; the next day's plan holds the customer."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    replies = pd.DataFrame([{"message_id": "<u1@c3>", "received_on": AS_OF, "from_address": "ap@c3.example.com",
                             "subject": "AW: Rechnung N-I3", "body": "Bitte keine E-Mails mehr an diese Adresse."}])
    def calls_it_a_question(request, user):
        return {"replies": [{"reply_id": "0", "category": "question", "summary": "asks", "instructions_found": False}]}

    with FakeAnthropic({"classify_replies": calls_it_a_question}) as fake:
        settings = __import__("arflow.policy", fromlist=["x"]).load_policy(ROOT / "policy.yaml").llm
        llm = Claude.connect(settings, api_key="k", base_url=fake.url, as_of=AS_OF)
        items, counts = run(ledger, llm, replies=replies)
    assert counts["classifier"]["model"] == 1 and [it["reply"]["category"] for it in items] == ["opt_out"]
    stops = ledger.stop_records(AS_OF)
    assert stops["opt_outs"]["customer_id"].tolist() == ["C3"]
    assert "unsubscribe" in stops["opt_outs"]["reason"].iloc[0]
    task = ledger.frame(m.OwnerTask).set_index("customer_id").loc["C3"]
    assert task["owner"] == "ae3@yourco.example" and "no more reminders" in task["subject"]


@pytest.mark.parametrize("body,category", [
    ("Die Rechnung wird am 10.12.2026 überwiesen.", "promise_to_pay"),   # future: a promise, not a payment
    ("Die Rechnung wurde gestern überwiesen.", "paid"),
    ("Nous avons réglé la facture N-I5 ce matin.", "paid"),
    ("Nous paierons le 10.12.2026.", "promise_to_pay"),
    ("Pouvez-vous avoir la gentillesse de renvoyer la facture ?", "question"),  # "avoir", the verb
])
def test_tense_and_common_words_do_not_mislead_the_rules(body, category):
    assert classify_rules("Re: facture / Rechnung", body)["category"] == category
