"""Exactly once: a run killed between "queued" and "sent", and two runs at once on PostgreSQL, never
send one message twice. Real `arflow run --mode send` processes, a real SMTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from prefect.settings import PREFECT_API_URL

from connectors.ledger import models as m
from connectors.ledger.store import Ledger
from tests.cli import arflow, env_delta
from tests.conftest import customer, invoice, make_source
from tests.mail import free_port

ARFLOW = str(Path(sys.executable).parent / "arflow")


class KillingSink:
    """Keeps accepted messages; when `kill_at` messages have been accepted, the next DATA kills
    the sending process instead of answering (a crash between queued and sent)."""

    def __init__(self):
        self.messages = []
        self.kill_at: int | None = None
        self.victim: subprocess.Popen | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.kill_at is not None and len(self.messages) == self.kill_at and self.victim is not None:
                os.kill(self.victim.pid, signal.SIGKILL)
                self.kill_at = None
                return "421 closing"
            self.messages.append(message_from_bytes(envelope.content, policy=email_policy.default))
        return "250 OK"


@pytest.fixture
def sink():
    s = KillingSink()
    port = free_port()
    c = Controller(s, hostname="127.0.0.1", port=port)
    c.start()
    s.port = port
    yield s
    c.stop()


def _env(tmp_path, sink, db_url, **extra):
    return {**os.environ, "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": db_url,
            "PREFECT_API_URL": PREFECT_API_URL.value() or "", "ARFLOW_SMTP_HOST": "127.0.0.1",
            "ARFLOW_SMTP_PORT": str(sink.port), "ARFLOW_MAIL_FROM": "ar@yourco.example", **extra}


def _source(tmp_path, n=4):
    return make_source(tmp_path / "src", [invoice(f"I{k}", f"C{k}", due_date="2026-11-18") for k in range(n)],
                       [customer(f"C{k}") for k in range(n)])


def _start(src, env, as_of="2026-11-23"):
    return subprocess.Popen([ARFLOW, "run", "--as-of", as_of, "--source", f"csv:{src}", "--mode", "send", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_run_killed_mid_send_never_sends_twice(tmp_path, sink):
    src = _source(tmp_path)
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    sink.kill_at = 1  # the first message goes, the process dies while the second is on the wire
    first = _start(src, _env(tmp_path, sink, db))
    sink.victim = first
    first.communicate(timeout=300)
    assert first.returncode == -signal.SIGKILL
    ledger = Ledger(db)
    box = ledger.frame(m.Outbox)
    assert Counter(box["status"]) == {"sent": 1, "sending": 1, "queued": 2}
    assert len(sink.messages) == 1

    # The retry (the same day, as a schedule or a person would start it): the message in flight is
    # in doubt and goes to a person; the ones never taken go now.
    retry = _start(src, _env(tmp_path, sink, db, ARFLOW_SENDING_TIMEOUT_SECONDS="0"))
    out, err = retry.communicate(timeout=300)
    assert retry.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["sent"] == 2 and summary["delivery_in_doubt"] == 1 and summary["outbox_new"] == 0
    box = ledger.frame(m.Outbox)
    assert Counter(box["status"]) == {"sent": 3, "delivery_unknown": 1}
    recipients = [msg["To"] for msg in sink.messages]
    assert len(recipients) == 3 == len(set(recipients))

    # A person checks the mail log (the server never accepted it) and approves a resend.
    (doubt,) = ledger.frame(m.Decision).itertuples()
    assert doubt.kind == "delivery_unknown"
    p = arflow(["decide", str(doubt.id), "approve", "--note", "not in the mail log"], env_delta(_env(tmp_path, sink, db)))
    assert p.returncode == 0, p.stderr
    again = _start(src, _env(tmp_path, sink, db, ARFLOW_SENDING_TIMEOUT_SECONDS="0"), as_of="2026-11-24")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    recipients = [msg["To"] for msg in sink.messages]
    assert sorted(recipients) == sorted(f"ap@c{k}.example.com" for k in range(4))  # each exactly once
    assert len({msg["Message-ID"] for msg in sink.messages}) == 4


@pytest.mark.postgres
def test_two_runs_at_once_on_postgresql_send_each_message_once(tmp_path, sink, pg_url):
    src = _source(tmp_path, n=12)
    Ledger(pg_url)  # migrated once, before both runs start
    runs = [_start(src, _env(tmp_path / f"r{i}", sink, pg_url)) for i in range(2)]
    results = [r.communicate(timeout=300) for r in runs]
    for r, (out, err) in zip(runs, results):
        assert r.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in results]
    assert sum(s["sent"] for s in summaries) == 12
    assert sum(s["outbox_new"] for s in summaries) == 12  # each touch queued by one run only
    recipients = Counter(msg["To"] for msg in sink.messages)
    assert len(recipients) == 12 and set(recipients.values()) == {1}
    box = Ledger(pg_url).frame(m.Outbox)
    assert len(box) == 12 and set(box["status"]) == {"sent"}
