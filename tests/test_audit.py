"""The audit log for a review (issue 23, item 10): `arflow audit export` writes every entry with who
and when, each chained to the one before by a hash; `arflow audit verify` finds an entry edited or
deleted in the ledger, or in the file."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import sqlalchemy as sa

from connectors.ledger import models as m
from connectors.ledger.store import Ledger, LedgerError
from tests.cli import in_folder as _run

pytestmark = pytest.mark.usefixtures("prefect_server")  # the CLI runs in this process, on the session's server

TODAY = dt.datetime.now(dt.timezone.utc).date()


def _ledger(tmp_path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'l.db'}")  # the database _run's commands use


def _entries(ledger: Ledger) -> None:
    ledger.record(m.Dispute, {"invoice_id": "I1", "customer_id": "C1", "opened_on": dt.date(2026, 11, 20),
                              "reason": "wrong quantity"}, "dispute.opened", "dana", "I1")
    ledger.audit("clerk", "decision.approved", "Decision", "=7", {"verdict": "approve", "note": "ok"})
    ledger.audit("arflow", "touch.queued", "message", "C1:2026-11-23:email", {"invoices": ["I1", "I2"]})
    ledger.audit("finance-lead@yourco.example", "decision.rejected", "Decision", "8", None)


def _export(tmp_path, fmt="csv", name="audit.csv"):
    out = tmp_path / name
    p = _run(["audit", "export", "--from", TODAY.isoformat(), "--to", TODAY.isoformat(), "--format", fmt,
              "--out", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr
    return out, p.stderr


def _verify(tmp_path, path):
    p = _run(["audit", "verify", str(path), "--json"], tmp_path)
    return p.returncode, json.loads(p.stdout)


def test_an_export_verifies_and_names_who_did_what_when(tmp_path):
    _entries(_ledger(tmp_path))
    for fmt in ("csv", "json"):
        path, err = _export(tmp_path, fmt, f"audit.{fmt}")
        assert "4 audit row(s)" in err and "chain intact" in err
        code, result = _verify(tmp_path, path)
        assert code == 0 and result["ok"] and result["rows"] == 4
    rows = json.loads((tmp_path / "audit.json").read_text())["rows"]
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("dana", "dispute.opened"), ("clerk", "decision.approved"), ("arflow", "touch.queued"),
        ("finance-lead@yourco.example", "decision.rejected")]
    assert rows[0]["at"].startswith(TODAY.isoformat()) and rows[1]["prev_hash"] == rows[0]["hash"]
    # A cell a spreadsheet would evaluate is escaped in the CSV (not in the JSON), and still verifies.
    assert ",'=7," in (tmp_path / "audit.csv").read_text() and rows[1]["entity_id"] == "=7"
    p = _run(["audit", "verify", str(tmp_path / "audit.csv")], tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("ok: 4 row(s), chain intact")


def test_a_row_edited_in_the_ledger_is_found(tmp_path):
    ledger = _ledger(tmp_path)
    _entries(ledger)
    with ledger.engine.begin() as conn:  # someone softens the record of who approved
        conn.execute(sa.text("update audit_log set actor = 'finance-lead@yourco.example' where id = 2"))
    path, err = _export(tmp_path)
    assert "CHAIN BROKEN" in err and "seq 2" in err
    code, result = _verify(tmp_path, path)
    assert code == 1 and result["problem"] == "edited" and result["seq"] == 2 and result["row"] == 2


def test_a_row_deleted_in_the_ledger_is_found(tmp_path):
    ledger = _ledger(tmp_path)
    _entries(ledger)
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("delete from audit_log where id = 3"))
    code, result = _verify(tmp_path, _export(tmp_path, "json", "a.json")[0])
    assert code == 1 and result["problem"] == "missing" and result["seq"] == 4
    assert "missing" in result["why"] and "seq 2" in result["why"]  # the gap is after row seq 2


def test_an_edited_or_shortened_file_is_found(tmp_path):
    _entries(_ledger(tmp_path))
    path, _ = _export(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], lines[2].replace("clerk", "dana"), *lines[3:]]) + "\n")
    code, result = _verify(tmp_path, path)
    assert code == 1 and result["problem"] == "edited" and result["seq"] == 2
    path.write_text("\n".join([lines[0], lines[1], lines[2], *lines[4:]]) + "\n")  # row seq 3 left out
    code, result = _verify(tmp_path, path)
    assert code == 1 and result["problem"] == "missing" and result["seq"] == 4
    p = _run(["audit", "verify", str(tmp_path / "nothing.csv")], tmp_path)
    assert p.returncode == 2 and "is not a file" in p.stderr
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    p = _run(["audit", "verify", str(tmp_path / "other.csv")], tmp_path)
    assert p.returncode == 2 and "not an arflow audit export" in p.stderr


def test_the_range_and_bad_arguments(tmp_path):
    _entries(_ledger(tmp_path))
    p = _run(["audit", "export", "--from", "2020-01-01", "--to", "2020-01-31", "--format", "json"], tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["rows"] == []
    p = _run(["audit", "export", "--from", "2026-12-02", "--to", "2026-12-01"], tmp_path)
    assert p.returncode == 2 and "is before --from" in p.stderr
    p = _run(["audit", "export", "--from", "2026-12-01", "--to", "2026-12-02", "--format", "xml"], tmp_path)
    assert p.returncode == 2 and "--format must be csv or json" in p.stderr


def test_concurrent_writers_never_fork_the_chain(ledger_url):
    """SQLite and PostgreSQL: four writers at once, each in its own transactions; one chain."""
    from connectors.ledger import audit

    url = ledger_url
    Ledger(url)
    errors = []

    def write(who):
        ledger = Ledger(url, migrate=False)
        try:
            for n in range(20):
                with ledger.engine.begin() as conn:  # as the flows write: inside their own transactions
                    ledger.audit(who, "touch.queued", "message", f"{who}:{n}", {"n": n}, conn)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = Ledger(url, migrate=False).audit_rows()
    assert len(rows) == 80 and audit.verify(rows)["ok"]


def test_the_entries_written_before_the_chain_are_chained_by_the_migration(tmp_path):
    from alembic import command
    from alembic.config import Config

    from connectors.ledger import audit
    from connectors.ledger.store import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    old = Ledger(url, migrate=False)
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
        conn.execute(sa.text("insert into audit_log (actor, action, entity, entity_id, detail) values "
                             "('dana', 'dispute.opened', 'Dispute', 'I1', '{}'), ('arflow', 'run.completed', 'run', "
                             "'r1', null)"))
    with pytest.raises(LedgerError, match=r"at migration 0008, this arflow needs 00\d\d .*arflow db upgrade"):
        Ledger(url)  # opening never migrates an existing ledger
    ledger = Ledger(url, migrate=True)  # arflow db upgrade
    ledger.audit("clerk", "decision.approved", "Decision", "1", {})
    rows = ledger.audit_rows()
    assert [r["actor"] for r in rows] == ["dana", "arflow", "clerk"] and audit.verify(rows)["ok"]
    assert rows[0]["prev_hash"] == audit.GENESIS
