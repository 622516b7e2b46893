"""How often the guardrails block a legitimate message; print one JSON object.

    python benchmarks/guardrail_precision.py [--days 60] [--customers 50]

Every message the demo's templates render is legitimate (no template threatens or leaks), so any
block is a false positive. Three measures:

- ``demo``: the customer e-mails of a dry run of the demo portfolio (its own ledger seeded), checked
  as a run checks them (every other demo customer's names and invoice numbers in the directory);
- ``demo_common_words``: the same messages against a directory that adds, for each, other customers
  named after the common words in its text ("Online", "Invoice", "Open", ...) and holding the short
  invoice numbers ``1``..``99``: the names and numbers a real customer list has (issue 21, item 4);
- ``simulator``: every customer e-mail the simulator rendered over ``--days`` days, blocked or not.

All three must be 0.0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

ANCHOR = dt.date(2026, 11, 23)


def _demo_messages(tmp: Path):
    import pandas as pd

    from arflow.config import Settings
    from arflow.demo import generate, seed_ledger
    from arflow.policy import load_policy
    from connectors.ledger.store import Ledger
    from connectors.sources import CsvSource
    from tasks import hops
    from tasks.touches import outbox_rows

    folder = generate(tmp / "demo", anchor=ANCHOR)
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
    seed_ledger(ledger, folder)
    policy = load_policy(Settings.from_env().policy_path)
    src = CsvSource(folder)
    inputs = hops.Inputs(source=src.name, invoices=src.invoices(), customers=src.customers(),
                         payments=src.payments(), aging_report=src.aging_report(),
                         reflected_payment_ids=src.reflected_payment_ids(), stops=ledger.stop_records(ANCHOR),
                         history=ledger.payment_history(ANCHOR), applied=ledger.applied_payments(ANCHOR),
                         credit_notes=src.credit_notes(), payment_schedule=src.payment_schedule(), as_of=ANCHOR)
    extracted, customers = hops.extract_aging(inputs, ANCHOR, policy)
    rec, _ = hops.reconcile_aging(extracted.frame, inputs, policy)
    enriched = hops.enrich_context(extracted.frame, customers, inputs, ANCHOR, policy)
    scored = hops.score(enriched.frame, policy)
    planned, actions = hops.plan_actions(scored.frame, ANCHOR, policy, mismatched=set(rec.mismatched_customers),
                                         touches=ledger.touch_history("dry-run"),
                                         installments=ledger.plan_schedule(ANCHOR))
    rows = outbox_rows(actions, planned.frame, mode="dry-run", run_id="precision", as_of=ANCHOR, policy=policy)
    mail = rows[rows["channel"] == "email"].drop_duplicates("message_key")
    return mail, planned.frame


def _rate(blocked: int, messages: int) -> float:
    return round(blocked / messages, 4) if messages else 0.0


def demo(tmp: Path) -> tuple[dict, dict]:
    from tasks.guardrails import Directory
    from tasks.touches import check_rendered

    mail, frame = _demo_messages(tmp)
    blocked = mail[mail["status"] == "blocked"]
    plain = {"messages": int(len(mail)), "blocked": int(len(blocked)), "false_positive_rate": _rate(len(blocked), len(mail)),
             "examples": blocked["closed_reason"].head(3).tolist()}
    numbers, owners = frame["invoice_number"].astype(str).tolist(), frame["customer_id"].tolist()
    names, name_owners = frame["customer_name"].astype(str).tolist(), frame["customer_id"].tolist()
    common, flagged, examples = 0, 0, []
    for r in mail.itertuples():
        words = sorted({w for w in re.findall(r"\b[a-z]{3,}\b", f"{r.subject}\n{r.body}")})
        common += len(words)
        directory = Directory.build(numbers + [str(k) for k in range(1, 100)], owners + ["OTHER"] * 99,
                                    names + [w.capitalize() for w in words], name_owners + ["OTHER"] * len(words))
        found = check_rendered(r.subject, r.body, json.loads(r.context) | {"needs_approval": bool(r.needs_approval)},
                               r.customer_id, directory)
        if found:
            flagged += 1
            examples.append(found)
    hostile = {"messages": int(len(mail)), "other_customers_per_message": round(99 + common / max(len(mail), 1), 1),
               "blocked": flagged, "false_positive_rate": _rate(flagged, len(mail)), "examples": examples[:3]}
    return plain, hostile


def simulator(days: int, customers: int) -> dict:
    from flows.simulate import simulate

    r = simulate(days=days, customers=customers, seed=1, series=False)
    return {"days": days, "customers": customers, "messages": r["messages_rendered"], "blocked": r["messages_blocked"],
            "false_positive_rate": _rate(r["messages_blocked"], r["messages_rendered"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--customers", type=int, default=50)
    args = ap.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        plain, hostile = demo(Path(tmp))
    sim = simulator(args.days, args.customers)
    print(json.dumps({"demo": plain, "demo_common_words": hostile, "simulator": sim,
                      "seconds": round(time.perf_counter() - began, 1)}))


if __name__ == "__main__":
    main()
