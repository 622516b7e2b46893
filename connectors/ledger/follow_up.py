"""The ledger's records of what people are asked to do and what their decisions set up: owner
tasks (escalations, quarter-end digest items, finance alerts, acknowledgement timeouts), decisions
carried out, write-offs and payment plans. Part of `Ledger` (connectors/ledger/store.py); the
delivery code (tasks/delivery.py) reads and writes them only through these methods."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import update

from connectors.ledger import models as m


class FollowUpRecords:
    """Mixed into Ledger: needs its engine, frame(), insert_new_rows(), insert_one() and insert_rows()."""

    # ---- owner tasks ---------------------------------------------------------------------------
    def add_owner_task(self, task: dict) -> bool:
        """An owner task under its task_key; False where that key is there already (once per key)."""
        return bool(self.insert_new_rows(m.OwnerTask, [task], "task_key"))

    def digest_items(self, on: dt.date) -> pd.DataFrame:
        """The escalations batched into the owners' quarter-end digests on `on`."""
        return self.frame(m.OwnerTask, (m.OwnerTask.kind == "digest_item") & (m.OwnerTask.created_on == on))

    def unacknowledged_escalations(self) -> pd.DataFrame:
        """Escalations and digest items still open and not yet handed to the finance lead."""
        return self.frame(m.OwnerTask, m.OwnerTask.kind.in_(["escalation", "digest_item"])
                          & (m.OwnerTask.status == "open") & m.OwnerTask.escalated_on.is_(None))

    def mark_escalated(self, task_id: int, on: dt.date) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(m.OwnerTask).where(m.OwnerTask.id == int(task_id)).values(escalated_on=on))

    # ---- the outbox rows delivery reads back ------------------------------------------------------
    def last_charge_error(self, invoice_id: str) -> str | None:
        """Why the latest auto-charge of this invoice was closed (its refusal), if there was one."""
        failed = self.frame(m.Outbox, (m.Outbox.invoice_id == invoice_id) & (m.Outbox.channel == "billing"))
        reason = failed["closed_reason"].iloc[-1] if not failed.empty else None
        return str(reason) if reason is not None and pd.notna(reason) else None  # no reason: not "None"

    def queued_live(self, key: str) -> pd.DataFrame:
        """The live rows of one message still queued (a notice this run just wrote, to send now)."""
        return self.frame(m.Outbox, (m.Outbox.idempotency_key == key) & (m.Outbox.mode == "live")
                          & (m.Outbox.status == "queued"))

    def delivered_on(self, on: dt.date) -> pd.DataFrame:
        """The messages sent on `on` (the simulated world reads what reached its customers)."""
        return self.frame(m.Outbox, (m.Outbox.delivered_on == on) & (m.Outbox.status == "sent"))

    def write_offs(self) -> pd.DataFrame:
        return self.frame(m.WriteOff)

    # ---- decisions carried out ------------------------------------------------------------------
    def decision_by_key(self, key: str) -> pd.Series | None:
        d = self.frame(m.Decision, m.Decision.decision_key == key)
        return d.iloc[0] if not d.empty else None

    def mark_carried_out(self, decision_id: int, on: dt.date) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(m.Decision).where(m.Decision.id == int(decision_id))
                         .values(status="carried_out", carried_out_on=on))

    def record_write_offs(self, rows: list[dict]) -> set[str]:
        """Write-offs, once per invoice; returns the invoice ids written off now."""
        return self.insert_new_rows(m.WriteOff, rows, "invoice_id")

    def open_payment_plan(self, plan: dict, installments: list[dict]) -> int:
        """A payment plan and its installments in one transaction; an earlier active plan of the same
        invoice (one that was missed) is marked missed. Returns the new plan's id."""
        with self.engine.begin() as conn:
            plan_id = self.insert_one(m.PaymentPlan, plan, conn)
            self.insert_rows(m.Installment, [{**i, "plan_id": plan_id} for i in installments], conn)
            conn.execute(update(m.PaymentPlan).where(m.PaymentPlan.invoice_id == plan["invoice_id"],
                                                     m.PaymentPlan.id != plan_id, m.PaymentPlan.status == "active")
                         .values(status="missed"))
        return plan_id
