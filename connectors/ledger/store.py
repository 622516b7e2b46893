"""The ledger: SQLite by default, PostgreSQL by URL. Opening a new (empty) ledger creates its schema;
opening one an older arflow wrote says to run `arflow db upgrade` (the deployments' pull step and
`make demo` run it), so a schema change on a shared database is never a side effect of a run."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
from pathlib import Path
import pandas as pd
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from arflow.safety import error_line, redact
from connectors.ledger import models as m, namespace
from connectors.ledger.clerk import ClerkRecords
from connectors.ledger.decisions import DecisionRecords
from connectors.ledger.follow_up import FollowUpRecords
from connectors.ledger.reads import Reads

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x61726677  # "arfw": the advisory lock every arflow process migrates under


# The outbox's rendered texts: most of its bytes, and nothing the KPIs count.
OUTBOX_TEXTS = ("recipients", "subject", "body", "context")


class LedgerError(RuntimeError):
    pass


_PASSING = ("database is locked", "database table is locked", "could not connect", "connection refused",
            "connection reset", "server closed the connection", "terminating connection", "timeout", "timed out",
            "deadlock detected", "could not serialize access")


def is_transient_db_error(exc: BaseException) -> bool:
    """A database failure that may pass on a later attempt: SQLite busy or locked by another writer,
    PostgreSQL unreachable, restarting, or a deadlock or serialization failure; never a schema or data
    error (a missing table, a constraint)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (OperationalError, DBAPIError)):
        text = str(getattr(exc, "orig", exc)).lower()
        return any(p in text for p in _PASSING)
    return False


def _redact(url: str) -> str:
    """The URL without its password (user info or query parameters), for messages."""
    from sqlalchemy.engine import make_url

    try:
        return redact(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return "<unparseable database URL>"


def _known_states(rows: list[dict]) -> None:
    """A touch is written in one of the outbox's states (m.OutboxStatus: a run writes the first ones;
    history brought in from elsewhere may be sent already), or not at all."""
    bad = sorted({str(r.get("status")) for r in rows} - set(m.OutboxStatus))
    if bad:
        raise LedgerError(f"a touch cannot be written as {', '.join(bad)}: not an outbox state "
                          f"({', '.join(m.OutboxStatus)})")


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.cache
def _scripts():
    """The migration scripts this arflow carries (read once a process: every Ledger() asks for the head)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


class Ledger(Reads, ClerkRecords, DecisionRecords, FollowUpRecords):
    def __init__(self, url: str, *, migrate: bool | None = None):
        """`migrate`: None (the default) creates the schema of an empty database and checks that any
        other is at this arflow's newest migration (LedgerError naming what to run, if not); True
        brings it up to date (`arflow db upgrade`); False opens it as it is."""
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if str(path) not in ("", ":memory:") and not str(path).startswith("file:"):  # a URI names its own
                path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(url, future=True, pool_pre_ping=True)
        except Exception as exc:
            raise LedgerError(f"cannot open the ledger at {_redact(url)}: {exc.__class__.__name__}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()
        elif migrate is None:
            self._open_checked()

    def revisions(self) -> tuple[str | None, str]:
        """(the ledger's migration, this arflow's newest): None for a database with no schema yet."""
        from alembic.runtime.migration import MigrationContext

        head = _scripts().get_current_head()
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except Exception as exc:
            raise LedgerError(f"cannot open the ledger at {_redact(self.url)}: {error_line(exc)}") from None
        return current, head

    def pending(self, revisions: tuple[str | None, str] | None = None) -> list[str]:
        """The migrations `arflow db upgrade` would run, oldest first (all of them for a new ledger);
        `revisions`: what revisions() just said, to ask the database only once."""
        current, head = revisions or self.revisions()
        if current == head:
            return []
        try:
            steps = list(_scripts().iterate_revisions(head, current or "base"))
        except Exception:  # a revision this arflow does not know
            return []
        return [s.revision for s in reversed(steps)]

    def _open_checked(self) -> None:
        current, head = self.revisions()
        if current == head:
            return
        if current is None:  # a new ledger: its schema, under the migration lock (another process may be at it)
            self.migrate(new_only=True)
            current, head = self.revisions()
            if current == head:
                return
        known = self.pending((current, head))
        where = _redact(self.url)
        if current is not None and not known:
            raise LedgerError(f"the ledger at {where} is at migration {current}, which this arflow does not know "
                              f"(its newest is {head}): a newer arflow wrote it; upgrade arflow")
        raise LedgerError(f"the ledger at {where} is at migration {current or 'none'}, this arflow needs {head} "
                          f"({len(known)} to run): back it up, then run `arflow db upgrade`")


    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self, *, new_only: bool = False) -> None:
        """Bring the schema to the newest migration. Safe when several processes open a fresh
        ledger at once: on PostgreSQL the migration runs under a transaction-level advisory lock
        (the others wait, then find the schema current); on SQLite under an exclusive lock on a
        file beside the database (SQLite runs DDL outside the transaction, so BEGIN IMMEDIATE would
        not cover it). `new_only`: only a database with no tables yet (opening a ledger creates a
        new one; an existing one is upgraded by `arflow db upgrade` alone)."""
        cfg = _alembic_config()
        try:
            with self._migration_lock(), self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
                if new_only:
                    from sqlalchemy import inspect

                    if inspect(conn).get_table_names():
                        return  # created meanwhile by another process, or not new: the caller's check says
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except Exception as exc:
            raise LedgerError(f"cannot migrate the ledger at {_redact(self.url)}: {error_line(exc)}") from None

    @contextlib.contextmanager
    def _migration_lock(self):
        """SQLite: an exclusive flock on `<database>.migrate.lock` while migrating (one host: SQLite's)."""
        path = self.engine.url.database if self.dialect == "sqlite" else None
        if not path or path == ":memory:" or path.startswith("file:"):
            yield
            return
        try:
            import fcntl
        except ImportError:  # no flock here (Windows): SQLite's own busy timeout is all there is
            yield
            return
        with open(f"{path}.migrate.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- reading -------------------------------------------------------------------------
    def frame(self, model: type[m.Base], where=None, *, without: tuple[str, ...] = ()) -> pd.DataFrame:
        """A table's rows (those `where` selects) as a frame; `without`: columns left unread (the
        outbox's texts, where only counts and states are wanted)."""
        table = model.__table__
        stmt = select(*[c for c in table.c if c.name not in without]) if without else select(table)
        if where is not None:
            stmt = stmt.where(where)
        return self._read(stmt)

    def _read(self, stmt, invoice_ids: set[str] | None = None) -> pd.DataFrame:
        """A query as a frame; `invoice_ids`: its rows of these invoices only, asked for by id when
        they are few (SQLite's bound-parameter limit was 999), else filtered after one read."""
        if invoice_ids is not None and len(invoice_ids) <= 900:
            stmt = stmt.where(stmt.selected_columns.invoice_id.in_(sorted(invoice_ids)))
        with self.engine.connect() as conn:
            out = _result_frame(conn.execute(stmt))
        if invoice_ids is not None and len(invoice_ids) > 900:
            out = out[out["invoice_id"].isin(invoice_ids)].reset_index(drop=True)
        return out

    def stop_records(self, as_of: dt.date) -> dict[str, pd.DataFrame]:
        """The records that can stop outreach, as they stand on as_of."""
        return {
            "disputes": self.frame(m.Dispute, (m.Dispute.opened_on <= as_of)
                                   & ((m.Dispute.resolved_on.is_(None)) | (m.Dispute.resolved_on > as_of))),
            "promises": self.frame(m.PromiseToPay, (m.PromiseToPay.recorded_on <= as_of)
                                   & ((m.PromiseToPay.closed_on.is_(None)) | (m.PromiseToPay.closed_on > as_of))),
            "payment_plans": self.frame(m.PaymentPlan, (m.PaymentPlan.starts_on <= as_of)
                                        & (m.PaymentPlan.status == "active")
                                        & ((m.PaymentPlan.ends_on.is_(None)) | (m.PaymentPlan.ends_on >= as_of))),
            "opt_outs": self.frame(m.OptOut, (m.OptOut.recorded_on <= as_of)
                                   & ((m.OptOut.withdrawn_on.is_(None)) | (m.OptOut.withdrawn_on > as_of))),
            "pauses": self.frame(m.Pause, (m.Pause.starts_on <= as_of) & (m.Pause.until >= as_of)),
            # Cash we could not place: the customer hears nothing until a person has looked.
            "unapplied_cash": self.frame(m.PaymentReceived, (m.PaymentReceived.status == "unapplied")
                                         & (m.PaymentReceived.recorded_on <= as_of)
                                         & m.PaymentReceived.customer_id.isnot(None)),
            "write_offs": self.frame(m.WriteOff, m.WriteOff.approved_on <= as_of),
            # An auto-charge the billing system refused: the invoice joins the early lane, flagged.
            "failed_charges": self.frame(m.Outbox, (m.Outbox.channel == "billing") & (m.Outbox.status == "failed")
                                         & (m.Outbox.as_of <= as_of)),
        }

    def touch_history(self, namespace: str, invoice_ids: set[str] | None = None) -> pd.DataFrame:
        """The outbox of one namespace (dry-run or live), as the planner needs it; `invoice_ids`:
        of these invoices only."""
        t = m.Outbox
        stmt = select(t.idempotency_key, t.invoice_id, t.customer_id, t.step, t.channel, t.status, t.as_of,
                      t.delivered_on).where(t.mode == namespace)
        return self._read(stmt, invoice_ids)

    def plan_schedule(self, as_of: dt.date) -> pd.DataFrame:
        """Installments of the payment plans active on as_of (what tasks.plan reads: plan_id, invoice_id, seq, due_on,
        amount_minor, cumulative_minor, balance_at_start_minor)."""
        plans = self.frame(m.PaymentPlan, (m.PaymentPlan.status == "active") & (m.PaymentPlan.starts_on <= as_of))
        if plans.empty:
            return _plan_schedule(plans, None)
        inst = self.frame(m.Installment, m.Installment.plan_id.in_([int(i) for i in plans["id"]]))
        return _plan_schedule(plans, inst)

    def payment_history(self, as_of: dt.date) -> pd.DataFrame:
        return self.frame(m.PaymentHistory, m.PaymentHistory.paid_date <= as_of)

    def applied_payments(self, as_of: dt.date, invoice_ids: set[str] | None = None) -> pd.DataFrame:
        """Applications standing on as_of (not reversed by then); `invoice_ids`: of these invoices
        only (the check before a send reads the invoices about to go)."""
        a = m.PaymentApplication
        standing = (a.applied_on <= as_of) & ((a.reversed_on.is_(None)) | (a.reversed_on > as_of))
        return self._read(select(a.__table__).where(standing), invoice_ids)

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(m.Meta.value).where(m.Meta.key == key)).scalar_one_or_none()

    # ---- writing -------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(m.Meta.__table__.delete().where(m.Meta.key == key))
            conn.execute(insert(m.Meta.__table__), [{"key": key, "value": value}])

    def claim_event(self, conn, key: str, value: str) -> bool:
        """Record an outside event's id inside the caller's transaction, the one that records its
        effect: True the first time. A failure rolls both back, so the sender's retry is processed."""
        return bool(self._insert_new(conn, m.Meta, [{"key": key, "value": value}], ["key"], "key"))

    def source_records(self, system: str) -> dict[str, list[dict]]:
        """A connected system's mirror: entity -> the objects as last synced."""
        out: dict[str, list[dict]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(m.SourceRecord.entity, m.SourceRecord.payload)
                                .where(m.SourceRecord.system == system)).all()
        for entity, payload in rows:
            out.setdefault(entity, []).append(json.loads(payload))
        return out

    def sync_source(self, system: str, position: str, upserts: list[dict], deletes: list[tuple[str, str]],
                    *, full: bool) -> None:
        """Apply one sync to the mirror and move its position, in one transaction: a failed sync
        leaves the mirror and the position as they were. `full`: the mirror is replaced."""
        table = m.SourceRecord.__table__
        with self.engine.begin() as conn:
            if full:
                conn.execute(table.delete().where(table.c.system == system))
            for entity, record_id in deletes:
                conn.execute(table.delete().where((table.c.system == system) & (table.c.entity == entity)
                                                  & (table.c.record_id == record_id)))
            if upserts:  # a concurrent run's sync of the same objects: the later write wins, no conflict
                ins = pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)
                stmt = ins.on_conflict_do_update(index_elements=["system", "entity", "record_id"],
                                                 set_={"payload": ins.excluded.payload,
                                                       "updated_at": ins.excluded.updated_at})
                conn.execute(stmt, [{"system": system, **u} for u in upserts])
            conn.execute(m.Meta.__table__.delete().where(m.Meta.key == f"sync:{system}"))
            conn.execute(insert(m.Meta.__table__), [{"key": f"sync:{system}", "value": position}])

    def insert_rows(self, model: type[m.Base], rows: list[dict], conn=None) -> int:
        """Insert rows; a key missing from some rows is NULL there (an executemany otherwise takes
        its columns from the first row and drops the rest silently)."""
        if not rows:
            return 0
        keys = list(dict.fromkeys(k for r in rows for k in r))
        rows = [{k: r.get(k) for k in keys} for r in rows]
        if conn is None:
            with self.engine.begin() as c:
                c.execute(insert(model.__table__), rows)
        else:
            conn.execute(insert(model.__table__), rows)
        return len(rows)

    def insert_one(self, model: type[m.Base], row: dict, conn) -> int:
        """Insert one row in the caller's transaction and return its new id, as the database
        assigned it (INSERT ... RETURNING: two runs inserting at once each get their own)."""
        return int(conn.execute(insert(model.__table__).returning(model.__table__.c.id), [row]).scalar_one())

    def insert_frame(self, model: type[m.Base], df: pd.DataFrame, conn=None) -> int:
        return self.insert_rows(model, _records(df), conn)

    def _insert_new(self, conn, model: type[m.Base], rows: list[dict], unique: list[str], returning: str) -> list:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING: the values of `returning` for rows this
        call inserted (a row another run inserted first does not come back)."""
        if not rows:
            return []
        keys = list(dict.fromkeys(k for r in rows for k in r))
        rows = [{k: r.get(k) for k in keys} for r in rows]
        table = model.__table__
        ins = pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)
        stmt = ins.on_conflict_do_nothing(index_elements=unique).returning(table.c[returning])
        return [r[0] for r in conn.execute(stmt, rows).all()]

    def insert_new_rows(self, model: type[m.Base], rows: list[dict], unique: str) -> set:
        """Insert rows whose `unique` value is not there yet; returns the values inserted."""
        with self.engine.begin() as conn:
            return set(self._insert_new(conn, model, rows, [unique], unique))

    def insert_outbox(self, df: pd.DataFrame, conn=None) -> int:
        """Insert touches; a row whose (idempotency_key, mode) is already there is left alone.
        Returns how many rows were new."""
        rows = _records(df)
        _known_states(rows)
        if conn is not None:
            return len(self._insert_new(conn, m.Outbox, rows, ["idempotency_key", "mode"], "id"))
        with self.engine.begin() as c:
            return len(self._insert_new(c, m.Outbox, rows, ["idempotency_key", "mode"], "id"))

    # ---- delivery: the outbox's live rows on their way out ----------------------------------
    def queue_touches(self, rows: pd.DataFrame, decisions: list[dict]) -> tuple[int, int]:
        """Insert touches and open a decision for each new message that waits for a person, in one
        transaction. Returns (new touches, new decisions)."""
        records = _records(rows)
        _known_states(records)
        with self.engine.begin() as conn:
            new_ids = self._insert_new(conn, m.Outbox, records, ["idempotency_key", "mode"], "id")
            opened = 0
            if new_ids:
                fresh = self._audit_touches(conn, new_ids)
                if decisions:
                    mine = [d for d in decisions if d["decision_key"].split(":blocked")[0] in fresh]
                    ids = self._insert_new(conn, m.Decision, mine, ["decision_key"], "id")
                    self._audit_decisions(conn, ids)
                    opened = len(ids)
        return len(new_ids), opened

    def _audit_touches(self, conn, ids: list[int]) -> set[str]:
        """One audit entry per new live message (dry-run rows never leave: the outbox holds them).
        Returns the message keys of the rows (every mode)."""
        t = m.Outbox
        wanted = set(int(i) for i in ids)
        found = [r for r in conn.execute(select(t.id, t.mode, t.run_id, t.message_key, t.invoice_id, t.customer_id,
                                                t.step, t.channel, t.status, t.recipients, t.subject)
                                         .where(t.id >= min(wanted), t.id <= max(wanted))) if r.id in wanted]
        messages: dict[str, dict] = {}
        for r in found:
            if r.mode != "live":
                continue
            e = messages.setdefault(r.message_key, {
                "actor": "arflow", "action": f"touch.{r.status}", "entity": "message", "entity_id": r.message_key,
                "detail": {"run": r.run_id, "customer": r.customer_id, "channel": r.channel, "steps": [],
                           "invoices": [], "recipients": r.recipients, "subject": r.subject}})
            e["detail"]["invoices"].append(r.invoice_id)
            if r.step not in e["detail"]["steps"]:
                e["detail"]["steps"].append(r.step)
        self.audit_many(list(messages.values()), conn)
        return {r.message_key for r in found}

    def _audit_decisions(self, conn, ids: list[int]) -> None:
        """A decision opened, in the audit log: what it is about and for whom."""
        if not ids:
            return
        t = m.Decision
        rows = conn.execute(select(t.id, t.kind, t.customer_id, t.invoice_ids, t.run_id)
                            .where(t.id.in_([int(i) for i in ids])).order_by(t.id)).all()
        self.audit_many([{"actor": "arflow", "action": "decision.opened", "entity": "Decision", "entity_id": str(r.id),
                          "detail": {"kind": r.kind, "customer": r.customer_id, "invoices": r.invoice_ids,
                                     "run": r.run_id}} for r in rows], conn)

    def open_blocked_decisions(self, decisions: list[dict], run_id: str) -> int:
        """Decisions on messages the guardrails stopped after they were queued (at send time); a
        message blocked again after its earlier decision was settled gets a new one."""
        if not decisions:
            return 0
        with self.engine.begin() as conn:
            taken = {r[0] for r in conn.execute(select(m.Decision.decision_key).where(
                m.Decision.decision_key.in_([d["decision_key"] for d in decisions])))}
            rows = [{**d, "decision_key": f"{d['decision_key']}:{run_id}"} if d["decision_key"] in taken else d
                    for d in decisions]
            ids = self._insert_new(conn, m.Decision, rows, ["decision_key"], "id")
            self._audit_decisions(conn, ids)
            return len(ids)

    def sendable(self, lane: str | None = None) -> pd.DataFrame:
        """Live touches queued to go (new today, approved since, or to retry), oldest first."""
        where = (m.Outbox.mode == "live") & (m.Outbox.status == "queued")
        if lane is not None:
            where &= m.Outbox.lane == lane
        df = self.frame(m.Outbox, where)
        return df.sort_values("id").reset_index(drop=True) if not df.empty else df

    def claim(self, message_key: str, ids: list[int], run_id: str) -> list[int]:
        """Take a message's queued rows for this run (queued -> sending). Only one run can take a
        row: the UPDATE matches `status = 'queued'`, so a second claimer gets nothing."""
        from sqlalchemy import update

        with self.engine.begin() as conn:
            res = conn.execute(update(m.Outbox).where(m.Outbox.id.in_([int(i) for i in ids]),
                                                      m.Outbox.status == "queued")
                               .values(status="sending", sent_by_run=run_id, sent_at=dt.datetime.now(dt.timezone.utc),
                                       attempts=m.Outbox.attempts + 1)
                               .returning(m.Outbox.id))
            return [r[0] for r in res.all()]

    def mark_message(self, message_key: str, mode: str, status: str, *, reason: str | None = None) -> int:
        """Every outbox row of one message (its key, in one mode's namespace) to `status`."""
        ids = [r[0] for r in self._rows(select(m.Outbox.id).where(m.Outbox.message_key == message_key,
                                                                   m.Outbox.mode == mode))]
        return self.mark(ids, status, reason=reason)

    def _rows(self, stmt) -> list:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def mark(self, ids: list[int], status: str, *, reason: str | None = None, delivered_on: dt.date | None = None,
             subject: str | None = None, body: str | None = None, only_from: tuple[str, ...] | None = None,
             conn=None) -> int:
        from sqlalchemy import update

        if not ids:
            return 0
        try:
            allowed = set(m.outbox_sources(status))
        except ValueError:
            raise LedgerError(f"{status!r} is not an outbox state ({', '.join(m.OutboxStatus)})") from None
        # Only rows in a state that may move there are changed (m.OUTBOX_TRANSITIONS): a sent touch
        # is never queued again, whoever asks; `only_from` narrows it further.
        sources = sorted(allowed & set(only_from)) if only_from else sorted(allowed)
        values: dict = {"status": status, "closed_reason": reason[:200] if reason else None}
        if delivered_on is not None:
            values["delivered_on"] = delivered_on
            values["sent_at"] = dt.datetime.now(dt.timezone.utc)
        if subject is not None:
            values["subject"], values["body"] = subject, body
        stmt = update(m.Outbox).where(m.Outbox.id.in_([int(i) for i in ids]), m.Outbox.status.in_(sources))
        if conn is None:
            with self.engine.begin() as c:
                return self.mark(ids, status, reason=reason, delivered_on=delivered_on, subject=subject, body=body,
                                 only_from=only_from, conn=c)
        n = conn.execute(stmt.values(**values)).rowcount
        if n and status != "sent":  # a sent message has its own entry (outbox.<channel>.sent), with its result
            self.audit("arflow", f"outbox.{status}", "outbox", ",".join(str(int(i)) for i in ids[:50]),
                       {"rows": n, "reason": reason, "edited": subject is not None}, conn)
        return n

    def in_doubt(self, older_than: dt.timedelta, as_of: dt.date, run_id: str) -> int:
        """Rows left `sending` by a run that stopped between taking them and recording the result:
        nobody knows whether the server got them. They are never resent on their own (a duplicate
        reminder is worse than a late one); each becomes a decision for a person."""
        from sqlalchemy import update

        cutoff = dt.datetime.now(dt.timezone.utc) - older_than
        with self.engine.begin() as conn:
            stuck = conn.execute(select(m.Outbox).where(m.Outbox.mode == "live", m.Outbox.status == "sending",
                                                        m.Outbox.sent_at <= cutoff)).mappings().all()
            if not stuck:
                return 0
            conn.execute(update(m.Outbox).where(m.Outbox.id.in_([r["id"] for r in stuck]), m.Outbox.status == "sending")
                         .values(status="delivery_unknown", closed_reason="the run stopped while sending"))
            decisions = {}
            for r in stuck:
                d = decisions.setdefault(r["message_key"], {
                    "decision_key": r["message_key"], "kind": "delivery_unknown", "invoice_ids": [],
                    "customer_id": r["customer_id"], "opened_on": as_of, "run_id": run_id, "status": "open",
                    "context": {"question": "Was this message delivered? approve = send it again, reject = treat as sent",
                                "channel": r["channel"], "recipients": r["recipients"], "subject": r["subject"],
                                "body": r["body"], "run": r["sent_by_run"], "claimed_at": r["sent_at"]}})
                d["invoice_ids"].append(r["invoice_id"])
            rows = [{**d, "invoice_ids": ",".join(d["invoice_ids"]), "context": json.dumps(d["context"], default=str)}
                    for d in decisions.values()]
            # A message in doubt a second time reopens its decision under a new key.
            taken = {r[0] for r in conn.execute(select(m.Decision.decision_key)
                                                .where(m.Decision.decision_key.in_(list(decisions))))}
            for r in rows:
                if r["decision_key"] in taken:
                    r["decision_key"] = f"{r['decision_key']}:doubt:{run_id}"
            self._audit_decisions(conn, self._insert_new(conn, m.Decision, rows, ["decision_key"], "id"))
            self.audit("arflow", "outbox.delivery_unknown", "run", run_id, {"messages": sorted(decisions)}, conn)
            return len(stuck)

    def record_checkpoint(self, result, receipts: pd.DataFrame, as_of: dt.date, run_id: str) -> dict:
        """Write a checkpoint's result in one transaction. Only payments this call inserts are
        applied, so two checkpoints at once cannot apply the same payment twice."""
        from sqlalchemy import delete, update

        with self.engine.begin() as conn:
            rows = [{**r, "run_id": run_id} for r in result.received]
            new = set(self._insert_new(conn, m.PaymentReceived, rows, ["payment_id"], "payment_id"))
            apps = [a for a in result.applications if a["payment_id"].removesuffix(":write_off") in new]
            self.insert_rows(m.PaymentApplication, apps, conn)
            self.insert_rows(m.CustomerCredit, [c for c in result.credits if c["payment_id"] in new], conn)
            reversing = {orig for rev, orig in result.reversal_of.items() if rev in new}
            if reversing:
                undone = reversing | {r + ":write_off" for r in reversing}  # a tolerated short payment's write-off too
                conn.execute(update(m.PaymentApplication).where(m.PaymentApplication.payment_id.in_(undone),
                                                                m.PaymentApplication.reversed_on.is_(None))
                             .values(reversed_on=as_of))
                conn.execute(update(m.PaymentReceived).where(m.PaymentReceived.payment_id.in_(reversing))
                             .values(status="reversed"))
                conn.execute(update(m.CustomerCredit).where(m.CustomerCredit.payment_id.in_(reversing))
                             .values(status="cancelled"))
                conn.execute(delete(m.PaymentHistory).where(m.PaymentHistory.payment_id.in_(reversing)))
            closed = [c for c in result.closed if c["payment_id"] in new]
            closed_ids = [c["invoice_id"] for c in closed]
            self.insert_rows(m.PaymentHistory, closed, conn)
            touches_closed = self._close_paid(conn, closed_ids, as_of, "paid")
            receipts_new = 0
            if receipts is not None and not receipts.empty:
                receipts_new = self.insert_outbox(receipts[receipts["invoice_id"].isin(closed_ids)], conn)
            self.audit("payment_checkpoint", "checkpoint.recorded", "run", run_id,
                       {"new_payments": len(new), "applications": len(apps), "closed": closed_ids,
                        "reversed": sorted(reversing)}, conn)
        return {"new_payments": len(new), "closed": closed_ids, "touches_closed": int(touches_closed),
                "receipts_queued": receipts_new, "reversed": sorted(reversing)}

    def record_settled(self, rows: list[dict], as_of: dt.date, actor: str = "payment_checkpoint", conn=None) -> dict:
        """Invoices the billing system settled itself (its own cash application, e.g. a QuickBooks
        payment linked to the invoice, a Stripe invoice.paid): their payment history, once per
        invoice, and their touches not yet out closed as paid, in one transaction. Rows: invoice_id,
        customer_id, issue_date, due_date, paid_date, amount_minor, currency, payment_id."""
        if not rows:
            return {"settled": 0, "touches_closed": 0}
        if conn is None:
            with self.engine.begin() as conn:
                return self.record_settled(rows, as_of, actor, conn)
        ids = [r["invoice_id"] for r in rows]
        known = set(conn.execute(select(m.PaymentHistory.invoice_id)
                                 .where(m.PaymentHistory.invoice_id.in_(ids))).scalars())
        new = [{**r, "days_to_pay": (r["paid_date"] - r["issue_date"]).days,
                "days_after_due": (r["paid_date"] - r["due_date"]).days}
               for r in rows if r["invoice_id"] not in known]
        self.insert_rows(m.PaymentHistory, new, conn)
        closed = [r["invoice_id"] for r in new]
        touches = self._close_paid(conn, closed, as_of, "paid at the source")
        if closed:
            self.audit(actor, "settled_at_source", "run", None, {"invoices": closed}, conn)
        return {"settled": len(new), "touches_closed": touches}

    @staticmethod
    def _close_paid(conn, invoice_ids: list[str], as_of: dt.date, reason: str) -> int:
        """Paid invoices: their touches not yet out are closed with `reason`, their open promises
        kept. Returns how many touches closed."""
        from sqlalchemy import update

        if not invoice_ids:
            return 0
        touches = conn.execute(
            update(m.Outbox).where(m.Outbox.invoice_id.in_(invoice_ids),
                                   m.Outbox.status.in_(["planned", "awaiting_decision", "queued"]))
            .values(status="closed", closed_reason=reason)).rowcount
        conn.execute(update(m.PromiseToPay).where(m.PromiseToPay.invoice_id.in_(invoice_ids),
                                                  m.PromiseToPay.closed_on.is_(None))
                     .values(closed_on=as_of, note="kept: paid"))
        return int(touches)

    def audit(self, actor: str, action: str, entity: str | None = None, entity_id: str | None = None,
              detail: dict | None = None, conn=None) -> None:
        self.audit_many([{"actor": actor, "action": action, "entity": entity, "entity_id": entity_id,
                          "detail": detail}], conn)

    def audit_many(self, entries: list[dict], conn=None) -> None:
        """Append entries (actor, action, entity, entity_id, detail) to the audit log, each chained to
        the one before by its hash (connectors/ledger/audit.py). The chain's head (meta audit_head) is
        locked first, so one writer appends at a time and the chain never forks: on PostgreSQL the
        row lock waits for the other transaction; on SQLite the write takes the database's lock."""
        from sqlalchemy import update

        from connectors.ledger.audit import GENESIS, chain

        if not entries:
            return
        if conn is None:
            with self.engine.begin() as c:
                return self.audit_many(entries, c)
        meta = m.Meta.__table__
        locked = conn.execute(update(meta).where(meta.c.key == "audit_head").values(value=meta.c.value)).rowcount
        head = conn.execute(select(meta.c.value).where(meta.c.key == "audit_head")).scalar_one_or_none()
        if not locked or head is None:  # the head row lost: the chain goes on from the last row written
            head = conn.execute(select(m.AuditLog.row_hash).order_by(m.AuditLog.id.desc()).limit(1)).scalar() \
                or GENESIS
            conn.execute(meta.delete().where(meta.c.key == "audit_head"))
            conn.execute(insert(meta), [{"key": "audit_head", "value": head}])
        # UTC with its offset: PostgreSQL keeps the instant, SQLite the UTC fields; both read back the same
        now = dt.datetime.now(dt.timezone.utc)
        rows = [{"at": now, "actor": e["actor"], "action": e["action"], "entity": e.get("entity"),
                 "entity_id": e.get("entity_id"),
                 "detail": json.dumps(e["detail"], default=str) if e.get("detail") is not None else None}
                for e in entries]
        linked = [{**{k: v for k, v in r.items() if k != "hash"}, "row_hash": r["hash"]}
                  for r in chain(rows, head)]
        conn.execute(insert(m.AuditLog.__table__), linked)
        conn.execute(update(meta).where(meta.c.key == "audit_head").values(value=linked[-1]["row_hash"]))

    def audit_rows(self, start: dt.date | None = None, end: dt.date | None = None) -> list[dict]:
        """The audit log from `start` to `end` (days, UTC, both included), in the order written, each
        row with its seq (id), time, who, what and its hashes as stored."""
        from connectors.ledger.audit import when

        t = m.AuditLog
        stmt = select(t.id, t.at, t.actor, t.action, t.entity, t.entity_id, t.detail, t.prev_hash, t.row_hash)
        if start is not None:
            stmt = stmt.where(t.at >= dt.datetime.combine(start, dt.time(), dt.timezone.utc))
        if end is not None:
            stmt = stmt.where(t.at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
        with self.engine.connect() as conn:
            found = conn.execute(stmt.order_by(t.id)).all()
        return [{"seq": r.id, "at": when(r.at) if r.at is not None else None, "actor": r.actor, "action": r.action,
                 "entity": r.entity, "entity_id": r.entity_id, "detail": r.detail, "prev_hash": r.prev_hash,
                 "hash": r.row_hash} for r in found]

    def transaction(self):
        """One transaction for several records (`with ledger.transaction() as conn:`), committed at the end."""
        return self.engine.begin()

    def record(self, model: type[m.Base], row: dict, action: str, actor: str, entity_id: str, conn=None) -> None:
        """A person's record (a dispute, promise, pause, opt-out) and its audit entry, in one transaction."""
        if conn is None:
            with self.engine.begin() as conn:
                return self.record(model, row, action, actor, entity_id, conn)
        self.insert_rows(model, [row], conn)
        self.audit(actor, action, model.__name__, entity_id, row, conn)

    def last_open_invoices(self, flow: str, as_of: dt.date, source: str) -> tuple[dt.date, int] | None:
        """(day, open invoices) of the latest completed run of `flow` on `source` before `as_of`."""
        stmt = (select(m.Run.as_of, m.Run.summary)
                .where(m.Run.flow == flow, m.Run.status == "completed", m.Run.as_of < as_of, m.Run.source == source)
                .order_by(m.Run.as_of.desc(), m.Run.finished_at.desc()).limit(5))
        for day, summary in self._rows(stmt):
            try:
                count = json.loads(summary or "{}").get("open_invoices")
            except ValueError:
                continue
            if isinstance(count, int):
                return day, count
        return None

    def start_run(self, run_id: str, flow: str, as_of: dt.date, source: str, mode: str, policy_version: str,
                  stale_after: dt.timedelta | None = None) -> None:
        """A run begins: its row `running`, with the process that runs it (host, pid, the process's
        start) in `summary` until it finishes. Runs left `running` that are clearly dead (their
        process gone from this host, or started longer than `stale_after` ago, default
        RUN_STALE_AFTER) are marked `crashed`."""
        with self.engine.begin() as conn:
            self._crashed_runs(conn, run_id, stale_after or RUN_STALE_AFTER)
            conn.execute(m.Run.__table__.delete().where(m.Run.run_id == run_id))
            conn.execute(insert(m.Run.__table__), [{"run_id": run_id, "flow": flow, "as_of": as_of, "source": source,
                                                    "mode": mode, "policy_version": policy_version,
                                                    "status": "running",
                                                    "summary": json.dumps({"process": _this_process()})}])
            self.audit("arflow", f"{flow}.started", "run", run_id, {"as_of": as_of, "source": source}, conn)

    def _crashed_runs(self, conn, run_id: str, stale_after: dt.timedelta) -> list[str]:
        """Mark `crashed` the runs left `running` by a process that died without finishing them
        (kill -9, a lost machine). Returns their run ids."""
        t = m.Run.__table__
        now = dt.datetime.now(dt.timezone.utc)
        rows = conn.execute(select(t.c.run_id, t.c.started_at, t.c.summary)
                            .where(t.c.status == "running", t.c.run_id != run_id)).all()
        crashed = []
        for rid, started, summary in rows:
            why = _why_dead(started, summary, now, stale_after)
            if why is None:
                continue
            n = conn.execute(t.update().where(t.c.run_id == rid, t.c.status == "running").values(
                status="crashed", finished_at=now, summary=json.dumps({"crashed": why}))).rowcount
            if n:
                crashed.append(rid)
                self.audit("arflow", "run.crashed", "run", rid, {"why": why}, conn)
        return crashed

    def finish_run(self, run_id: str, status: str, summary: dict | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(m.Run.__table__.update().where(m.Run.run_id == run_id).values(
                status=status, finished_at=dt.datetime.now(dt.timezone.utc),
                summary=json.dumps(summary, default=str) if summary is not None else None))
            self.audit("arflow", f"run.{status}", "run", run_id, None, conn)

    # ---- decisions -----------------------------------------------------------------------------
    def decision(self, decision_id: int) -> dict | None:
        """One decision as a dict, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(m.Decision.__table__).where(m.Decision.id == int(decision_id))).mappings().first()
        return dict(row) if row is not None else None

    def approved_decision(self, message_key: str) -> dict | None:
        """The approved decision that released this message, or None (a message no person had to see)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(m.Decision.__table__).where(m.Decision.decision_key == message_key,
                                                                  m.Decision.status == "approved")).mappings().first()
        return dict(row) if row is not None else None

    def reopen_decision(self, decision_id: int, outbox_ids: list[int], changes: list[dict], *, envelope: dict,
                        subject: str, body: str, on: dt.date, run_id: str) -> None:
        """A message changed after a person approved it (its recipients, sender or text): back to
        that person, with the difference shown, instead of sending what they did not see. The
        message's rows wait again; the decision is open again with the new envelope and text, a
        new revision (a new review form) and what changed; the approval stays in the audit log."""
        from sqlalchemy import update

        with self.engine.begin() as conn:
            d = conn.execute(select(m.Decision.__table__).where(m.Decision.id == int(decision_id))).mappings().first()
            context = json.loads(d["context"])
            context.update({"envelope": envelope, "recipients": ",".join(envelope["to"] + envelope["cc"]),
                            "proposed_subject": subject, "proposed_text": body,
                            "revision": int(context.get("revision", 0)) + 1,
                            "changed_since_approval": {"approved_by": d["decided_by"], "approved_on": d["decided_on"],
                                                       "found_on": on, "changes": changes}})
            conn.execute(update(m.Outbox).where(m.Outbox.id.in_([int(i) for i in outbox_ids])).values(
                status="awaiting_decision", subject=subject, body=body,
                closed_reason="changed since approval: " + ", ".join(c["field"] for c in changes)))
            conn.execute(update(m.Decision).where(m.Decision.id == int(decision_id)).values(
                status="open", decided_by=None, decided_on=None, note=None, edited_subject=None, edited_body=None,
                choice=None, installments=None, flow_run_id=None, context=json.dumps(context, default=str)))
            self.audit("arflow", "decision.reopened", "Decision", str(decision_id),
                       {"run": run_id, "changes": [c["field"] for c in changes],
                        "approved_by": d["decided_by"]}, conn)

    def refuse_review(self, decision_id: int, why: str) -> None:
        """A form's answer the policy's approvals refused: the decision stays open, shows why, and
        waits for a new form (a new revision, so the next announcement opens one)."""
        from sqlalchemy import update

        with self.engine.begin() as conn:
            d = conn.execute(select(m.Decision.context).where(m.Decision.id == int(decision_id))).scalar_one()
            context = json.loads(d)
            context.update({"refused": why, "revision": int(context.get("revision", 0)) + 1})
            conn.execute(update(m.Decision).where(m.Decision.id == int(decision_id)).values(
                flow_run_id=None, context=json.dumps(context, default=str)))

    def decisions_awaiting_review_run(self) -> pd.DataFrame:
        """Open decisions no Prefect review run has been opened for yet, oldest first."""
        return self.frame(m.Decision, (m.Decision.status == "open") & m.Decision.flow_run_id.is_(None)) \
            .sort_values("id").reset_index(drop=True)

    def decision_statuses(self, ids: list[int]) -> dict[int, dict]:
        """id -> {status, decided_by} for these decisions."""
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(m.Decision.id, m.Decision.status, m.Decision.decided_by)
                                .where(m.Decision.id.in_([int(i) for i in ids]))).all()
        return {int(r.id): {"status": r.status, "decided_by": r.decided_by} for r in rows}

    def attach_review_run(self, decision_id: int, flow_run_id: str) -> None:
        """Remember the Prefect run whose form answers this decision."""
        with self.engine.begin() as conn:
            conn.execute(m.Decision.__table__.update().where(m.Decision.id == int(decision_id))
                         .values(flow_run_id=str(flow_run_id)))

    # ---- the model ----------------------------------------------------------------------------
    def llm_score_cache(self) -> pd.DataFrame:
        return self.frame(m.LlmScore)

    def replies(self) -> pd.DataFrame:
        return self.frame(m.Reply)

    def record_llm(self, calls: list[dict], scores: list[dict]) -> None:
        """The model's calls (tokens, cost) and its new scores, in one transaction."""
        if not calls and not scores:
            return
        with self.engine.begin() as conn:
            self.insert_rows(m.LlmCall, calls, conn)
            self.insert_rows(m.LlmScore, scores, conn)

    def record_replies(self, items: list[dict]) -> int:
        """Each triaged reply with its effects (pauses, promises, disputes, owner tasks) and an audit
        entry, one transaction per reply; a reply already recorded (same message id) changes nothing."""
        done = 0
        for it in items:
            reply, e = it["reply"], it["effects"]
            with self.engine.begin() as conn:
                if self._insert_new(conn, m.Reply, [reply], ["message_id"], "message_id") == []:
                    continue
                self.insert_rows(m.Pause, e.pauses, conn)
                self.insert_rows(m.PromiseToPay, e.promises, conn)
                self.insert_rows(m.Dispute, e.disputes, conn)
                self.insert_rows(m.OptOut, e.opt_outs, conn)
                self._insert_new(conn, m.OwnerTask, e.tasks, ["task_key"], "task_key")
                self._insert_new(conn, m.Decision, getattr(e, "decisions", []), ["decision_key"], "decision_key")
                self.audit("arflow-triage", "reply.triaged", "Reply", reply["message_id"],
                           {k: reply[k] for k in ("customer_id", "invoice_id", "category", "classifier", "flagged",
                                                  "effect")}, conn)
                done += 1
        return done

    def llm_usage(self, run_id: str) -> dict:
        from connectors.llm import llm_totals

        return llm_totals(_records(self.frame(m.LlmCall, m.LlmCall.run_id == run_id)))

    def passed_backtest(self, prompt_version: str, model: str) -> dict | None:
        """The latest passing model backtest for this prompt version and model, or None."""
        bt = self.frame(m.Backtest, (m.Backtest.prompt_version == prompt_version) & (m.Backtest.scorer == "model")
                        & (m.Backtest.model == model) & m.Backtest.passed.is_(True))
        return None if bt.empty else bt.sort_values("id").iloc[-1].to_dict()

    # ---- KPIs --------------------------------------------------------------------------------
    def registered_invoice_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(m.InvoiceRegister.invoice_id)).scalars())

    def register_invoices(self, rows: pd.DataFrame) -> int:
        """Add invoices the register has not seen (rows from tasks.kpis.register_rows); a row already
        there is left as it is."""
        return len(self.insert_new_rows(m.InvoiceRegister, _records(rows), "invoice_id")) if len(rows) else 0

    def daily_run_on_or_before(self, day: dt.date) -> dict | None:
        """The latest completed daily_ar run with as_of on or before `day`."""
        stmt = (select(m.Run.run_id, m.Run.as_of, m.Run.mode).where(
            (m.Run.flow == "daily_ar") & (m.Run.status == "completed") & (m.Run.as_of <= day))
            .order_by(m.Run.as_of.desc(), m.Run.finished_at.desc().nulls_last(), m.Run.started_at.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else {"run_id": row[0], "as_of": row[1], "mode": row[2]}

    def completed_daily_run(self, day: dt.date, mode: str) -> bool:
        stmt = select(m.Run.run_id).where((m.Run.flow == "daily_ar") & (m.Run.status == "completed")
                                          & (m.Run.as_of == day) & (m.Run.mode == mode)).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def kpi_frames(self, as_of: dt.date, window_days: int, run: dict | None = None):
        """Everything tasks.kpis.compute reads (the fields of tasks.kpis.Frames), as the ledger stood on
        as_of: today's open invoices are those of the latest daily run on or before as_of (or `run`)."""
        run = run or self.daily_run_on_or_before(as_of)
        notes = []
        if run is None:
            notes.append(f"no completed daily run on or before {as_of}: no open invoices to report")
            outcomes = self.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == "")
        else:
            outcomes = self.frame(m.InvoiceOutcome, m.InvoiceOutcome.run_id == run["run_id"])
            if run["as_of"] != as_of:
                notes.append(f"open invoices as of the latest daily run on or before {as_of}: {run['as_of']}")
        begin_run = self.daily_run_on_or_before(as_of - dt.timedelta(days=window_days))
        beginning = {}
        if begin_run is not None and begin_run["as_of"] == as_of - dt.timedelta(days=window_days):
            b = self.frame(m.InvoiceOutcome, (m.InvoiceOutcome.run_id == begin_run["run_id"])
                           & m.InvoiceOutcome.balance_minor.is_not(None))
            beginning = {str(c): int(v) for c, v in b.groupby("currency")["balance_minor"].sum().items()}
        mode = run["mode"] if run else "dry-run"
        ns = namespace(mode)
        plans = self.frame(m.PaymentPlan, (m.PaymentPlan.status == "active") & (m.PaymentPlan.starts_on <= as_of))
        installments = self.frame(m.Installment, m.Installment.plan_id.in_([int(i) for i in plans["id"]])) \
            if not plans.empty else self.frame(m.Installment, m.Installment.id == -1)
        return dict(
            as_of=as_of, run_id=run["run_id"] if run else None, run_as_of=run["as_of"] if run else None,
            run_mode=mode, open_invoices=outcomes,
            register=self.frame(m.InvoiceRegister, m.InvoiceRegister.issue_date <= as_of),
            history=self.payment_history(as_of),
            write_offs=self.frame(m.WriteOff, m.WriteOff.approved_on <= as_of),
            outbox=self.frame(m.Outbox, (m.Outbox.mode == ns) & (m.Outbox.as_of <= as_of), without=OUTBOX_TEXTS),
            owner_tasks=self.frame(m.OwnerTask, m.OwnerTask.created_on <= as_of),
            decisions=self.frame(m.Decision, m.Decision.opened_on <= as_of),
            payments=self.frame(m.PaymentReceived, m.PaymentReceived.recorded_on <= as_of),
            applications=self.frame(m.PaymentApplication, m.PaymentApplication.applied_on <= as_of),
            disputes=self.frame(m.Dispute, m.Dispute.opened_on <= as_of),
            promises=self.frame(m.PromiseToPay, m.PromiseToPay.recorded_on <= as_of),
            opt_outs=self.frame(m.OptOut, m.OptOut.recorded_on <= as_of),
            replies=self.frame(m.Reply, m.Reply.received_on <= as_of),
            installments=installments,
            beginning_ar=beginning, notes=notes)

    def save_kpi_snapshot(self, rows: list[dict]) -> None:
        """Replace the day's snapshot (a re-run of the day wins)."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(m.KpiSnapshot.__table__.delete().where(m.KpiSnapshot.as_of == rows[0]["as_of"]))
            self.insert_rows(m.KpiSnapshot, rows, conn)

    def kpi_snapshots(self, until: dt.date, days: int = 400) -> pd.DataFrame:
        return self.frame(m.KpiSnapshot, (m.KpiSnapshot.as_of <= until)
                          & (m.KpiSnapshot.as_of > until - dt.timedelta(days=days)))

    def write_run_results(self, outcomes: pd.DataFrame, quarantine: pd.DataFrame,
                          reconciliation: pd.DataFrame) -> None:
        """One transaction for a run's outcomes, quarantine and reconciliation rows."""
        with self.engine.begin() as conn:
            self.insert_frame(m.InvoiceOutcome, outcomes, conn)
            self.insert_frame(m.Quarantine, quarantine, conn)
            self.insert_frame(m.ReconciliationResult, reconciliation, conn)


def _records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as plain Python values (None for missing, date for dates, int for ints),
    column by column (a frame-wide astype and where cost more than the insert)."""
    if df is None or df.empty:
        return []
    columns = {}
    for col in df.columns:
        values = df[col].tolist()
        if pd.api.types.is_datetime64_any_dtype(df[col]):
            columns[col] = [None if _missing(v) else v.date() for v in values]
        else:
            columns[col] = [None if _missing(v) else v for v in values]
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*columns.values())]


def _missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # How long a write waits for another writer's lock before it fails (and its hop retries).
    cur.execute(f"PRAGMA busy_timeout={int(os.environ.get('ARFLOW_SQLITE_BUSY_TIMEOUT_MS', '30000'))}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _result_frame(result) -> pd.DataFrame:
    """A query's rows as a frame. The rows go in as plain tuples: pandas probes each SQLAlchemy Row
    for attributes (a failed key lookup each), which cost more than the query on a ledger's tables."""
    columns = list(result.keys())
    return pd.DataFrame([tuple(r) for r in result], columns=columns)


RUN_STALE_AFTER = dt.timedelta(hours=24)  # no run takes this long: one still `running` after it died


def _this_process() -> dict:
    import socket

    import psutil

    return {"host": socket.gethostname(), "pid": os.getpid(), "created": psutil.Process().create_time()}


def _why_dead(started, summary, now: dt.datetime, stale_after: dt.timedelta) -> str | None:
    """Why a `running` run is dead (None: it may still be running)."""
    import socket

    import psutil

    try:
        proc = ((json.loads(summary) or {}).get("process") or {}) if summary else {}
    except (TypeError, ValueError, AttributeError):
        proc = {}
    if proc.get("host") == socket.gethostname() and isinstance(proc.get("pid"), int):
        try:  # the same pid may be another process by now: its start time tells
            alive = abs(psutil.Process(proc["pid"]).create_time() - float(proc.get("created") or 0)) < 1.0
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            alive = False
        if not alive:
            return f"its process {proc['pid']} on {proc['host']} is gone"
    if started is not None:
        started = started if started.tzinfo else started.replace(tzinfo=dt.timezone.utc)
        if now - started > stale_after:
            return f"still running {stale_after} after it started ({started.isoformat(timespec='seconds')})"
    return None


def _plan_schedule(plans: pd.DataFrame, installments: pd.DataFrame) -> pd.DataFrame:
    """Installments of active payment plans on one invoice each: plan_id, invoice_id, seq, due_on,
    amount_minor, cumulative_minor, balance_at_start_minor."""
    cols = ["plan_id", "invoice_id", "seq", "due_on", "amount_minor", "cumulative_minor", "balance_at_start_minor"]
    if plans is None or plans.empty or installments is None or installments.empty:
        return pd.DataFrame(columns=cols)
    p = plans[plans["invoice_id"].notna()].rename(columns={"id": "plan_id"})
    x = installments.merge(p[["plan_id", "invoice_id", "balance_at_start_minor"]], on="plan_id")
    x = x.sort_values(["plan_id", "seq"])
    x["cumulative_minor"] = x.groupby("plan_id")["amount_minor"].cumsum()
    x["due_on"] = pd.to_datetime(x["due_on"]).astype("datetime64[s]")
    return x[cols].reset_index(drop=True)
