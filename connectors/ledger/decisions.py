"""The ledger's decisions: what waits for a person, and what their verdict does to the messages it
holds, in one transaction with the audit line. Part of `Ledger` (connectors/ledger/store.py); who
may decide and what a verdict means are the domain's (tasks/decisions.py), which hands the ledger a
`Settlement` to write."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import select, update

from connectors.ledger import models as m


@dataclass
class Settlement:
    """What a verdict writes: the decision's new values, the move of its messages (every outbox row
    of `message_key` in state `from_status` gets `outbox_values`), and the audit line."""
    decision_values: dict
    message_key: str
    from_status: str
    outbox_values: dict
    action: str
    detail: dict = field(default_factory=dict)


class DecisionRecords:
    """Mixed into Ledger: needs its engine, frame() and audit()."""

    def open_decisions(self, customer_id: str | None = None) -> pd.DataFrame:
        """The open decisions (of one customer), oldest first."""
        where = m.Decision.status == "open"
        if customer_id is not None:
            where = where & (m.Decision.customer_id == customer_id)
        return self.frame(m.Decision, where).sort_values("id").reset_index(drop=True)

    def settle_decision(self, decision_id: int, by: str, decide: Callable[[dict], Settlement]) -> tuple[dict, int]:
        """Read the decision, let `decide` (the domain's rules; it may raise) say what its verdict
        writes, and write it with its audit line, all in one transaction: a decision is settled once
        even when two people settle it at the same moment. Returns the decision as it was read and how
        many outbox rows moved."""
        with self.engine.begin() as conn:
            found = conn.execute(select(m.Decision).where(m.Decision.id == decision_id)).mappings().first()
            d = dict(found) if found is not None else None
            s = decide(d)
            moved = conn.execute(update(m.Outbox).where(m.Outbox.message_key == s.message_key,
                                                        m.Outbox.status == s.from_status)
                                 .values(**s.outbox_values)).rowcount
            conn.execute(update(m.Decision).where(m.Decision.id == decision_id).values(**s.decision_values))
            self.audit(by, s.action, "Decision", str(decision_id), {**s.detail, "touches": moved}, conn)
        return d, moved

    def customer_records(self, customers: list[str], run_id: str | None) -> dict[str, pd.DataFrame]:
        """What the ledger holds of these customers for the decision queue: the invoices of the daily
        run `run_id`, credits to review, active payment plans, open disputes and promises, and the
        live messages sent."""
        def rows(model, where=None):
            cond = model.customer_id.in_(customers) if len(customers) <= 900 else None
            if where is not None:
                cond = where if cond is None else cond & where
            df = self.frame(model, cond)
            return df[df["customer_id"].astype(str).isin(customers)] if not df.empty else df

        return {
            "outcomes": rows(m.InvoiceOutcome, m.InvoiceOutcome.run_id == run_id) if run_id else pd.DataFrame(),
            "credits": rows(m.CustomerCredit, m.CustomerCredit.status == "to_review"),
            "plans": rows(m.PaymentPlan, m.PaymentPlan.status == "active"),
            "disputes": rows(m.Dispute, m.Dispute.resolved_on.is_(None)),
            "promises": rows(m.PromiseToPay, m.PromiseToPay.closed_on.is_(None)),
            "touches": rows(m.Outbox, (m.Outbox.mode == "live") & (m.Outbox.status == "sent")),
        }
