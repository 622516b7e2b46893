"""The ledger on SQLite and on PostgreSQL: migrations, idempotent outbox, stop records by date."""

import datetime as dt
import threading

import pandas as pd
import pytest
from sqlalchemy import inspect

from connectors.ledger import models as m
from connectors.ledger.store import Ledger, LedgerError

D = dt.date


def _touch(key, **kw):
    row = {"idempotency_key": key, "mode": "dry-run", "run_id": "r1", "as_of": D(2026, 11, 23), "invoice_id": "I1",
           "customer_id": "C1", "lane": "early", "step": "nudge", "channel": "email", "tone": "friendly",
           "recipients": "ap@example.com", "subject": "s", "body": "b", "needs_approval": False, "status": "planned"}
    row.update(kw)
    return row


def test_migrations_create_every_table_and_are_rerunnable(ledger_url):
    ledger = Ledger(ledger_url)
    Ledger(ledger_url)  # second open: upgrade to head is a no-op
    tables = set(inspect(ledger.engine).get_table_names())
    assert set(m.Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_outbox_is_idempotent_per_key_and_mode(ledger_url):
    ledger = Ledger(ledger_url)
    assert ledger.insert_outbox(pd.DataFrame([_touch("I1:nudge:email"), _touch("I2:nudge:email", invoice_id="I2")])) == 2
    assert ledger.insert_outbox(pd.DataFrame([_touch("I1:nudge:email", run_id="r2")])) == 0
    # A dry run never blocks a real send of the same touch.
    assert ledger.insert_outbox(pd.DataFrame([_touch("I1:nudge:email", mode="send")])) == 1
    assert set(ledger.touch_history("dry-run")["idempotency_key"]) == {"I1:nudge:email", "I2:nudge:email"}
    assert len(ledger.frame(m.Outbox)) == 3


def test_concurrent_writers_cannot_duplicate_a_touch(ledger_url):
    ledger = Ledger(ledger_url)
    batch = pd.DataFrame([_touch(f"I{i}:nudge:email", invoice_id=f"I{i}") for i in range(200)])
    results, errors = [], []

    def worker():
        try:
            results.append(Ledger(ledger_url, migrate=False).insert_outbox(batch))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert len(ledger.frame(m.Outbox)) == 200
    assert sum(results) == 200


def test_stop_records_are_read_as_of_a_date(ledger_url):
    ledger = Ledger(ledger_url)
    ledger.insert_rows(m.Dispute, [{"invoice_id": "I1", "customer_id": "C1", "opened_on": D(2026, 11, 1),
                                    "resolved_on": D(2026, 11, 20)}])
    ledger.insert_rows(m.Pause, [{"customer_id": "C1", "starts_on": D(2026, 11, 10), "until": D(2026, 11, 30),
                                  "reason": "AP on leave"}])
    assert len(ledger.stop_records(D(2026, 11, 19))["disputes"]) == 1
    assert ledger.stop_records(D(2026, 11, 20))["disputes"].empty
    assert ledger.stop_records(D(2026, 11, 9))["pauses"].empty
    assert len(ledger.stop_records(D(2026, 11, 30))["pauses"]) == 1


def test_unreachable_database_is_a_clear_error_without_the_password(tmp_path):
    with pytest.raises(LedgerError) as err:
        Ledger("postgresql+psycopg://arflow:s3cret-pw@127.0.0.1:1/none")
    assert "s3cret-pw" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_applications_of_some_invoices_are_read_as_of_a_date(ledger_url):
    """The check before a send asks for the applications of the invoices about to go: by id when
    they are few, filtered after one read when they are many; reversed ones are not standing."""
    ledger = Ledger(ledger_url)
    rows = [{"payment_id": f"P{i}", "invoice_id": f"I{i}", "customer_id": "C1", "amount_minor": 100 + i,
             "currency": "USD", "applied_on": D(2026, 11, 2), "rule": "exact"} for i in range(1200)]
    rows[3]["reversed_on"] = D(2026, 11, 10)
    ledger.insert_rows(m.PaymentApplication, rows)
    on = D(2026, 11, 20)
    assert sorted(ledger.applied_payments(on, {"I1", "I3", "I7", "nope"})["invoice_id"]) == ["I1", "I7"]
    assert sorted(ledger.applied_payments(D(2026, 11, 5), {"I3"})["invoice_id"]) == ["I3"]  # before its reversal
    many = {f"I{i}" for i in range(0, 1200, 1)} - {"I5"}
    got = ledger.applied_payments(on, many)
    assert len(got) == 1198 and "I5" not in set(got["invoice_id"]) and "I3" not in set(got["invoice_id"])
    assert len(ledger.applied_payments(on)) == 1199
    assert ledger.applied_payments(D(2026, 11, 1), {"I1"}).empty


def test_the_migrations_build_what_the_models_declare(ledger_url):
    """A model's new column, table or index without its migration fails here (SQLite reflects
    Double as FLOAT, so column types are compared on PostgreSQL only)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    ledger = Ledger(ledger_url)
    with ledger.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    flat = [d for group in diffs for d in (group if isinstance(group, list) else [group])]
    if ledger.dialect == "sqlite":
        flat = [d for d in flat if d[0] != "modify_type"]
    assert flat == []
    indexes = {i["name"] for i in inspect(ledger.engine).get_indexes("outbox")}
    assert "ix_outbox_status_channel" in indexes


def test_a_run_left_running_by_a_killed_process_is_marked_crashed_by_the_next(tmp_path):
    """Issue 21, item 14: kill -9 leaves a `runs` row `running`; a later run marks it `crashed`
    once it is clearly dead (its process gone from this host, or older than the bound), and leaves
    a run whose process is alive, or on another host and recent, alone."""
    import datetime as dt
    import json
    import os
    import signal
    import subprocess
    import sys

    import sqlalchemy as sa

    from connectors.ledger import models as m
    from connectors.ledger.store import Ledger

    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = Ledger(url)
    day = dt.date(2026, 11, 23)
    code = ("import sys, time; from connectors.ledger.store import Ledger; import datetime as dt; "
            "Ledger(sys.argv[1]).start_run(sys.argv[2], 'daily_ar', dt.date(2026, 11, 23), 'demo', 'send', 'v'); "
            "print('started', flush=True); time.sleep(600)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = {rid: subprocess.Popen([sys.executable, "-c", code, url, rid], stdout=subprocess.PIPE, text=True, env=env)
             for rid in ("killed", "alive")}
    try:
        for p in procs.values():
            assert p.stdout.readline().strip() == "started"
        procs["killed"].send_signal(signal.SIGKILL)
        procs["killed"].wait(timeout=10)
        with ledger.engine.begin() as conn:  # runs on another machine: one recent, one from two days ago
            for rid, started in (("elsewhere-recent", dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)),
                                 ("elsewhere-old", dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))):
                conn.execute(sa.insert(m.Run.__table__).values(
                    run_id=rid, flow="daily_ar", as_of=day, source="demo", mode="send", policy_version="v",
                    status="running", started_at=started,
                    summary=json.dumps({"process": {"host": "another-host", "pid": 1, "created": 0}})))
        ledger.start_run("next", "daily_ar", day, "demo", "send", "v")
        runs = ledger.frame(m.Run).set_index("run_id")
        assert runs.loc["killed", "status"] == "crashed" and "is gone" in runs.loc["killed", "summary"]
        assert runs.loc["elsewhere-old", "status"] == "crashed"
        assert runs.loc["alive", "status"] == "running" and runs.loc["elsewhere-recent", "status"] == "running"
        assert runs.loc["next", "status"] == "running"
        audit = ledger.frame(m.AuditLog)
        assert set(audit.loc[audit["action"] == "run.crashed", "entity_id"]) == {"killed", "elsewhere-old"}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()


def test_a_new_rows_id_is_its_own_while_another_run_inserts_at_once(ledger_url):
    """insert_one returns the id the database gave this row, not the newest id in the table: a run
    whose transaction is still open while another run commits a plan keeps its own plan's id."""
    ledger = Ledger(ledger_url)
    row = {"customer_id": "C1", "invoice_id": "I1", "starts_on": D(2026, 11, 23), "status": "active",
           "balance_at_start_minor": 1000, "currency": "USD"}
    with ledger.engine.begin() as first:
        mine = ledger.insert_one(m.PaymentPlan, row, first)
        if ledger.engine.dialect.name == "postgresql":  # SQLite has one writer: the other run waits
            with ledger.engine.begin() as other:
                theirs = ledger.insert_one(m.PaymentPlan, {**row, "customer_id": "C2", "invoice_id": "I2"}, other)
            assert theirs > mine
        plan = first.execute(m.PaymentPlan.__table__.select().where(m.PaymentPlan.id == mine)).mappings().one()
        assert plan["customer_id"] == "C1"
    assert set(ledger.frame(m.PaymentPlan)["customer_id"]) == ({"C1", "C2"} if ledger.engine.dialect.name ==
                                                                "postgresql" else {"C1"})


def _old_ledger(url, revision="0008"):
    from alembic import command
    from alembic.config import Config

    from connectors.ledger.store import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    old = Ledger(url, migrate=False)
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return old


@pytest.mark.usefixtures("prefect_server")
def test_opening_an_older_ledger_says_what_to_run_and_db_upgrade_runs_it(ledger_url, tmp_path):
    import json

    from tests.cli import arflow

    _old_ledger(ledger_url)
    with pytest.raises(LedgerError, match=r"is at migration 0008, this arflow needs \d+ \(\d to run\): back it up, "
                                          r"then run `arflow db upgrade`"):
        Ledger(ledger_url)
    env = {"ARFLOW_DB_URL": ledger_url, "ARFLOW_DATA_DIR": str(tmp_path)}
    status = arflow(["db", "status", "--json"], env)
    st = json.loads(status.stdout)
    assert status.returncode == 1 and st["migration"] == "0008" and st["state"] == "pending"
    assert st["pending"][0] == "0009" and st["pending"][-1] == st["newest"]
    up = arflow(["db", "upgrade"], env)
    assert up.returncode == 0, up.stderr
    assert f"migration 0008 -> {st['newest']}; ran {len(st['pending'])} migration(s)" in up.stderr
    again = arflow(["db", "status"], env)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert Ledger(ledger_url).revisions() == (st["newest"], st["newest"])   # opens without a word


def test_a_ledger_a_newer_arflow_wrote_is_not_touched(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = Ledger(url)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(LedgerError, match="at migration 0099, which this arflow does not know .*upgrade arflow"):
        Ledger(url)


def test_a_touch_moves_only_along_the_outbox_transitions(ledger_url):
    """A sent (or failed, skipped, rejected, closed) touch is final: no later mark queues it again,
    whoever asks; a touch is written only in an outbox state; an unknown state is refused."""
    from connectors.ledger.models import OUTBOX_TRANSITIONS, OutboxStatus

    ledger = Ledger(ledger_url)
    ledger.insert_outbox(pd.DataFrame([_touch("I1:nudge:email", mode="live", status="queued", message_key="C1:e")]))
    (oid,) = ledger.frame(m.Outbox)["id"].tolist()
    assert ledger.claim("C1:e", [oid], "run-1") == [oid]                # queued -> sending
    assert ledger.mark([oid], "sent", reason="ok", delivered_on=D(2026, 11, 23)) == 1
    for again in ("queued", "sending", "failed", "blocked", "awaiting_decision", "skipped"):
        assert ledger.mark([oid], again, reason="late retry") == 0       # final: nothing moves it
    assert ledger.claim("C1:e", [oid], "run-2") == []
    assert ledger.frame(m.Outbox)["status"].tolist() == ["sent"]
    with pytest.raises(LedgerError, match="'resend' is not an outbox state"):
        ledger.mark([oid], "resend")
    with pytest.raises(LedgerError, match="cannot be written as resent: not an outbox state"):
        ledger.insert_outbox(pd.DataFrame([_touch("I2:nudge:email", mode="live", status="resent")]))
    # every state is in the table, and the final ones lead nowhere
    assert set(OUTBOX_TRANSITIONS) == set(OutboxStatus)
    assert {s for s, nxt in OUTBOX_TRANSITIONS.items() if not nxt} == {"sent", "failed", "skipped", "rejected", "closed"}


def test_the_planners_status_groups_are_outbox_states():
    from connectors.ledger.models import OutboxStatus
    from tasks.plan import DELIVERED, NOT_DELIVERED, PENDING

    assert set(DELIVERED) | set(PENDING) | set(NOT_DELIVERED) <= set(OutboxStatus)
