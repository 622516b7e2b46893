"""Records the flow tests set up: a message that went out on an earlier day, a portfolio of
autopay invoices."""

from __future__ import annotations

import datetime as dt

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tests.conftest import customer, invoice, make_source

D = dt.date


def delivered(env, invoice_id: str, customer_id: str, step: str, on: D) -> None:
    """An e-mail step that went out on an earlier day (as a firmer step requires)."""
    Ledger(f"sqlite:///{env / 'ledger.db'}").insert_rows(m.Outbox, [{
        "idempotency_key": f"{invoice_id}:{step}:email", "mode": "live", "run_id": "earlier", "as_of": on,
        "invoice_id": invoice_id, "customer_id": customer_id, "lane": "late", "step": step, "channel": "email",
        "status": "sent", "delivered_on": on, "message_key": f"{customer_id}:{on}:email", "needs_approval": False}])


def autopay_source(env):
    src = make_source(env / "src", [invoice("I4", "C3", due_date="2026-11-23", autopay="true", balance="49.00"),
                                    invoice("I5", "C4", due_date="2026-11-23", autopay="true", balance="59.00")],
                      [customer("C3", segment="transactional", owner_csm_email=""),
                       customer("C4", segment="transactional", owner_csm_email="")])
    (src / "payment_methods.csv").write_text("customer_id,method,status\nC3,card,card_expired\nC4,card,valid\n")
    return src
