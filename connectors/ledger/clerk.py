"""What a clerk records and closes from the command line (`arflow dispute`, `answered`, `opt-out`,
`cash review`, `ack`): each change with its audit line in one transaction, and nothing written
(no audit line either) where there was nothing to change. Each method returns how many records it
changed; 0 is the caller's "there is no such open record". Part of `Ledger` (connectors/ledger/store.py)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from connectors.ledger import models as m

RECORDS = {"Dispute": m.Dispute, "PromiseToPay": m.PromiseToPay, "Pause": m.Pause, "OptOut": m.OptOut}


class ClerkRecords:
    """Mixed into Ledger: needs its engine, record(), audit() and insert_new_rows()."""

    def record_named(self, kind: str, row: dict, action: str, actor: str, entity_id: str, conn=None) -> None:
        """A person's record by its kind: Dispute, PromiseToPay, Pause or OptOut."""
        self.record(RECORDS[kind], row, action, actor, entity_id, conn)

    def open_decision_once(self, row: dict) -> bool:
        """A decision under its decision_key; False where that key is open already."""
        return bool(self.insert_new_rows(m.Decision, [row], "decision_key"))

    def last_run_source(self) -> str | None:
        """The source of the latest daily run or payment checkpoint."""
        with self.engine.connect() as conn:
            return conn.execute(select(m.Run.source).where(m.Run.flow.in_(["daily_ar", "payment_checkpoint"]))
                                .order_by(m.Run.started_at.desc()).limit(1)).scalar()

    def code_dispute(self, invoice_id: str, code: str, by: str, on: dt.date) -> int:
        """The open dispute's reason code; the decision that asked for it is closed with it."""
        with self.engine.begin() as conn:
            n = conn.execute(update(m.Dispute).where(m.Dispute.invoice_id == invoice_id, m.Dispute.resolved_on.is_(None))
                             .values(reason_code=code)).rowcount
            if n:
                conn.execute(update(m.Decision).where(m.Decision.kind == "dispute_reason",
                                                      m.Decision.invoice_ids == invoice_id, m.Decision.status == "open")
                             .values(status="approved", choice=code, decided_by=by, decided_on=on))
                self.audit(by, "dispute.coded", "Dispute", invoice_id, {"on": on, "code": code}, conn)
        return n

    def resolve_dispute(self, invoice_id: str, by: str, on: dt.date, note: str | None = None, conn=None) -> int:
        """Resolve the open dispute(s) on an invoice (reminders resume on the next run)."""
        if conn is None:
            with self.engine.begin() as conn:
                return self.resolve_dispute(invoice_id, by, on, note, conn)
        n = conn.execute(update(m.Dispute).where(m.Dispute.invoice_id == invoice_id, m.Dispute.resolved_on.is_(None))
                         .values(resolved_on=on)).rowcount
        if n:
            self.audit(by, "dispute.resolved", "Dispute", invoice_id,
                       {"on": on} if note is None else {"on": on, "note": note}, conn)
        return n

    def answer_question(self, customer_id: str, by: str, on: dt.date, note: str = "") -> int:
        """A customer's question was answered: the pause it put on their reminders ends yesterday."""
        with self.engine.begin() as conn:
            n = conn.execute(update(m.Pause).where(m.Pause.customer_id == customer_id, m.Pause.kind == "question",
                                                   m.Pause.until >= on)
                             .values(until=on - dt.timedelta(days=1))).rowcount
            if n:
                self.audit(by, "question.answered", "Pause", customer_id, {"on": on, "note": note}, conn)
        return n

    def withdraw_opt_out(self, customer_id: str, by: str, on: dt.date) -> int:
        with self.engine.begin() as conn:
            n = conn.execute(update(m.OptOut).where(m.OptOut.customer_id == customer_id, m.OptOut.withdrawn_on.is_(None))
                             .values(withdrawn_on=on)).rowcount
            if n:
                self.audit(by, "opt_out.withdrawn", "OptOut", customer_id, {"on": on}, conn)
        return n

    def review_cash(self, payment_id: str, by: str, on: dt.date, note: str) -> int:
        """Unapplied cash marked as looked at (the customer's reminders resume on the next run)."""
        with self.engine.begin() as conn:
            n = conn.execute(update(m.PaymentReceived).where(m.PaymentReceived.payment_id == payment_id,
                                                             m.PaymentReceived.status == "unapplied")
                             .values(status="reviewed")).rowcount
            if n:
                self.audit(by, "cash.reviewed", "PaymentReceived", payment_id, {"on": on, "note": note}, conn)
        return n

    def acknowledge_task(self, task_id: int, by: str, on: dt.date) -> int:
        """An owner escalation acknowledged: it never goes on to the finance lead."""
        with self.engine.begin() as conn:
            n = conn.execute(update(m.OwnerTask).where(m.OwnerTask.id == task_id, m.OwnerTask.status == "open")
                             .values(status="acknowledged", acknowledged_on=on)).rowcount
            if n:
                self.audit(by, "owner_task.acknowledged", "OwnerTask", str(task_id), {"on": on}, conn)
        return n
