import pytest

from tasks.guardrails import Directory, check_message

OWNERS = {"10001": "C1", "10002": "C1", "20001": "C2"}
NAMES = {"Acme Corp": "C1", "Globex Industries": "C2"}


def _dir(owners=OWNERS, names=NAMES):
    return Directory.build(list(owners), list(owners.values()), list(names), list(names.values()))


def _check(body, subject="Invoice 10001", recipients=("ap@acme.example",), approved=False):
    return check_message(subject, body, customer_id="C1", recipients=list(recipients), directory=_dir(),
                         approved_step=approved)


def test_a_plain_reminder_passes():
    v = _check("Hi Pat, invoice 10001 and 10002 for Acme Corp are open. Pay here: https://pay.example/x")
    assert v.ok and v.violations == ()


@pytest.mark.parametrize("body,rule", [
    ("If we do not hear from you we will take legal action.", "legal_threat"),
    ("Our attorney will be in touch.", "legal_threat"),
    ("This account will be referred to a collection agency.", "collections_or_credit_reporting"),
    ("Late payment may affect your credit report.", "collections_or_credit_reporting"),
    ("Your service will be suspended on Friday.", "service_suspension"),
    ("INTERNAL NOTE: chronic late payer, be firm.", "internal_note"),
    ("Your risk score is 87.", "internal_note"),
    ("Invoice 20001 is also open.", "other_customer_data"),
    ("Globex Industries paid on time, unlike you.", "other_customer_data"),
])
def test_each_rule_blocks(body, rule):
    v = _check(body)
    assert not v.ok and rule in v.violations


def test_suspension_wording_and_cfo_copy_only_on_a_step_a_human_approves():
    body = "We will need to suspend service unless this is resolved."
    assert not _check(body, recipients=("ap@acme.example", "cfo@acme.example")).ok
    assert set(_check(body, recipients=("cfo@acme.example",)).violations) == {"service_suspension", "c_suite_recipient"}
    assert _check(body, recipients=("ap@acme.example", "cfo@acme.example"), approved=True).ok
    # ... but an approval never allows threats.
    assert not _check("We will sue.", approved=True).ok


def test_words_that_merely_contain_a_rule_are_fine():
    assert _check("Thanks for the courtesy call; the courtyard office sent the remittance.").ok


def test_amounts_and_day_counts_are_not_taken_for_invoice_numbers():
    owners = {**OWNERS, "20001": "C2", "17": "C2", "1200000": "C2"}
    v = check_message("Invoice 10001 is 17 days past due", "Amount: 20001.50 USD, or 1200000 JPY.",
                      customer_id="C1", recipients=["ap@acme.example"], directory=_dir(owners))
    assert v.ok


def test_the_recipients_own_names_are_not_wording():
    body = "Hi Sue Court, invoice 10001 for Courtside Legal Action Figures Ltd is open."
    assert not _check(body).ok
    v = check_message("Invoice 10001", body, customer_id="C1", recipients=["ap@x.example"], directory=_dir(),
                      own_names=("Sue Court", "Courtside Legal Action Figures Ltd"))
    assert v.ok


def test_invoice_numbers_with_letters_match_whatever_the_case():
    d = Directory.build(["INV-20001"], ["C2"], [], [])
    assert not check_message("x", "see inv-20001", customer_id="C1", recipients=[], directory=d).ok
