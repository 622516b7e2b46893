"""Stop conditions recorded from the command line take effect on the next run, and end when ended."""

import json

from tests.conftest import customer, invoice, make_source
from tests.cli import in_folder as _run


def _held(tmp_path, src, day):
    p = _run(["run", "--as-of", day, "--source", f"csv:{src}", "--json"], tmp_path)
    assert p.returncode == 0, p.stderr[-1500:]
    return json.loads(p.stdout)["held"]


def test_records_hold_and_release(tmp_path):
    invoices = [invoice(f"I{i}", f"C{i}", due_date="2026-11-02") for i in range(1, 6)]
    src = make_source(tmp_path / "src", invoices, [customer(f"C{i}") for i in range(1, 6)],
                      payments=[{"payment_id": "P9", "customer_id": "C5", "amount": "3.00", "currency": "USD",
                                 "received_date": "2026-11-20", "reference": "?"}])
    steps = [["dispute", "open", "I1", "--customer", "C1", "--reason", "wrong quantity", "--on", "2026-11-20"],
             ["promise", "I2", "--customer", "C2", "--date", "2026-11-30", "--on", "2026-11-20"],
             ["pause", "C3", "--until", "2026-11-27", "--reason", "AP on leave", "--on", "2026-11-20"],
             ["opt-out", "C4", "--reason", "asked by phone", "--on", "2026-11-20"]]
    for args in steps:  # no run yet: the records name the source whose customers they are checked against
        p = _run(args + ["--source", f"csv:{src}"], tmp_path)
        assert p.returncode == 0, p.stderr
    p = _run(["checkpoint", "--as-of", "2026-11-20", "--source", f"csv:{src}", "--json"], tmp_path)
    assert json.loads(p.stdout)["unapplied"] == 1
    assert _held(tmp_path, src, "2026-11-23") == {"dispute": 1, "promise_to_pay": 1, "paused": 1, "opt_out": 1,
                                                  "unapplied_cash": 1}
    for args in (["dispute", "resolve", "I1", "--on", "2026-11-24"], ["opt-out", "C4", "--withdraw", "--on", "2026-11-24"],
                 ["cash", "review", "P9", "--note", "bank fee refund, not a payment"]):
        assert _run(args, tmp_path).returncode == 0
    # The pause ends after the 27th, the promise after the 30th (reminders resume the day after).
    assert _held(tmp_path, src, "2026-11-25") == {"promise_to_pay": 1, "paused": 1}
    assert _held(tmp_path, src, "2026-12-01") == {}


def test_record_commands_refuse_what_does_not_make_sense(tmp_path):
    p = _run(["dispute", "resolve", "NOPE"], tmp_path)
    assert p.returncode == 2 and "no open dispute" in p.stderr
    p = _run(["promise", "I1", "--customer", "C1", "--date", "2026-01-01", "--on", "2026-11-20"], tmp_path)
    assert p.returncode == 2 and "before the day" in p.stderr
    p = _run(["pause", "C1", "--until", "soon", "--reason", "x"], tmp_path)
    assert p.returncode == 2 and "--until must be a date" in p.stderr


def test_records_refuse_unknown_customers_and_invoices_and_take_the_sources_spelling(tmp_path):
    """Issue 21, item 10: a stop on a customer that does not exist stops nobody."""
    src = make_source(tmp_path / "src", [invoice("I1", "S2", due_date="2026-11-02"), invoice("I2", "C1")],
                      [customer("S2"), customer("C1"), customer("S20")])
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    assert _run(["run", "--as-of", "2026-11-20", "--source", f"csv:{src}", "--json"], tmp_path).returncode == 0
    # The ledger's last run says which source: no --source needed any more.
    for args, close in ((["opt-out", "NOSUCHCUSTOMER"], "nothing close"), (["opt-out", "S3"], "close: S2"),
                        (["pause", "C9", "--until", "2026-11-27", "--reason", "x", "--on", "2026-11-20"], "C1"),
                        (["promise", "I9", "--customer", "S2", "--date", "2026-11-30", "--on", "2026-11-20"], "I1"),
                        (["dispute", "open", "I1", "--customer", "S9", "--reason", "x"], "S2"),
                        (["dispute", "open", "I2", "--customer", "S2", "--reason", "x"], "customer C1's")):
        p = _run(args, tmp_path)
        assert p.returncode == 2 and close in p.stderr, (args, p.stderr)
    assert _run(["opt-out", " s2 ", "--on", "2026-11-20"], tmp_path).returncode == 0
    import sqlalchemy as sa

    with sa.create_engine(ledger).connect() as conn:
        assert conn.execute(sa.text("select customer_id from opt_outs")).scalars().all() == ["S2"]
    assert _held(tmp_path, src, "2026-11-23") == {"opt_out": 1}
