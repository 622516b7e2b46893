"""The ledger's records as frames for the hops and the reports, each read named for what it is,
and the few writes of whole tables (a run's quarantine, a backtest, the demo's seed). Part of
`Ledger` (connectors/ledger/store.py): no code outside the ledger names a table or a column in SQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from connectors.ledger import models as m

DEMO_TABLES = {"payment_history": m.PaymentHistory, "disputes": m.Dispute, "promises": m.PromiseToPay,
               "payment_plans": m.PaymentPlan, "pauses": m.Pause}


class Reads:
    """Mixed into Ledger: needs its engine, frame(), insert_rows(), insert_frame() and audit()."""

    def outbox(self) -> pd.DataFrame:
        return self.frame(m.Outbox)

    def decisions(self) -> pd.DataFrame:
        return self.frame(m.Decision)

    def promises(self) -> pd.DataFrame:
        return self.frame(m.PromiseToPay)

    def payment_plans(self) -> pd.DataFrame:
        return self.frame(m.PaymentPlan)

    def payments_received(self) -> pd.DataFrame:
        return self.frame(m.PaymentReceived)

    def payment_applications(self) -> pd.DataFrame:
        return self.frame(m.PaymentApplication)

    def emails_sent_by(self, run_id: str) -> pd.DataFrame:
        """The customer e-mails a run sent."""
        return self.frame(m.Outbox, (m.Outbox.sent_by_run == run_id) & (m.Outbox.status == "sent")
                          & (m.Outbox.channel == "email"))

    def emails_between(self, since: dt.date, until: dt.date, mode: str) -> pd.DataFrame:
        """The e-mail touches of a namespace (live or dry_run) queued from `since` to `until`."""
        return self.frame(m.Outbox, (m.Outbox.as_of >= since) & (m.Outbox.as_of <= until)
                          & (m.Outbox.channel == "email") & (m.Outbox.mode == mode))

    def replace_quarantine(self, run_id: str, rows: pd.DataFrame) -> None:
        """A run's quarantined rows, in place of what an earlier attempt of the same run wrote."""
        with self.engine.begin() as conn:
            conn.execute(m.Quarantine.__table__.delete().where(m.Quarantine.run_id == run_id))
            self.insert_frame(m.Quarantine, rows, conn)

    def record_backtest(self, row: dict) -> None:
        self.insert_rows(m.Backtest, [row])

    def seed_demo(self, frames: dict[str, pd.DataFrame], customers: list[str], meta: dict) -> None:
        """The demo's ledger records (payment history, disputes, promises, plans, pauses) in place of
        what these customers had, with one audit line, in one transaction."""
        with self.engine.begin() as conn:
            for name, df in frames.items():
                model = DEMO_TABLES[name]
                conn.execute(model.__table__.delete().where(model.customer_id.in_(customers)))
                self.insert_frame(model, df, conn)
            self.audit("seed-demo", "demo.ledger_seeded", "ledger", None, meta, conn)
