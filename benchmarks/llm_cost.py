"""What the model costs per invoice per day: replay the demo for 60 days (the daily flow's hops in
order, the ledger between days, touches recorded in the dry-run outbox) with Claude scoring through
the real anthropic SDK against the recording fake (connectors/fake_anthropic.py: it counts tokens and
models prompt caching). Prints one JSON object.

    python benchmarks/llm_cost.py [--days 60] [--customers 240] [--seed 42]

The seeds' reference build spends about $0.10 per invoice per day (Claude Sonnet, 5,000 invoices);
the goal is 50 times less. `--customers 3200` gives about 5,000 open invoices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from arflow import demo  # noqa: E402
from arflow.businessdays import company_business_day  # noqa: E402
from arflow.policy import load_policy  # noqa: E402
from connectors.ledger.store import Ledger  # noqa: E402
from connectors.llm import Claude, llm_totals  # noqa: E402
from connectors.sources import DemoSource  # noqa: E402
from tasks import hops  # noqa: E402
from tasks.ai_score import customer_context  # noqa: E402
from tasks.touches import outbox_rows  # noqa: E402
from connectors.fake_anthropic import FakeAnthropic  # noqa: E402

REFERENCE_USD = 0.10


def replay(days: int, customers: int, seed: int, start: dt.date) -> dict:
    policy = load_policy(ROOT / "policy.yaml")
    tmp = Path(tempfile.mkdtemp(prefix="arflow-llm-cost-"))
    folder = demo.generate(tmp / "demo", anchor=start, seed=seed, customers=customers)
    ledger = Ledger(f"sqlite:///{tmp / 'l.db'}")
    src = DemoSource(folder)
    src.prepare_ledger(ledger)
    per_day = []
    with FakeAnthropic() as fake:
        llm = Claude.connect(policy.llm, api_key="sk-benchmark", base_url=fake.url)
        for k in range(days):
            day = start + dt.timedelta(days=k)
            if not company_business_day(day, policy.company_country):
                continue
            llm.as_of, since = day, len(llm.calls)
            inputs = hops.Inputs(source=src.name, invoices=src.invoices(), customers=src.customers(),
                                 payments=src.payments(), aging_report=None, reflected_payment_ids=set(),
                                 stops=ledger.stop_records(day), history=ledger.payment_history(day),
                                 applied=ledger.applied_payments(day))
            extracted, customers_ok = hops.extract_aging(inputs, day, policy)
            enriched = hops.enrich_context(extracted.frame, customers_ok, inputs, day, policy)
            context = customer_context(ledger.touch_history("dry-run"), ledger.replies(), day)
            scored = hops.score(enriched.frame, policy, llm=llm, as_of=day, cache=ledger.llm_score_cache(),
                                context=context, run_id=f"day{k}")
            ledger.record_llm(llm.calls[since:], scored.llm_cache)
            planned, actions = hops.plan_actions(scored.frame, day, policy, mismatched=set(),
                                                 touches=ledger.touch_history("dry-run"),
                                                 installments=ledger.plan_schedule(day))
            rows = outbox_rows(actions, planned.frame, mode="dry-run", run_id=f"day{k}", as_of=day, policy=policy)
            ledger.queue_touches(rows, [])
            t = llm_totals(llm.calls[since:])
            per_day.append({"day": day.isoformat(), "open_invoices": int(len(scored.frame)), **scored.llm,
                            "calls": t["llm_calls"], "cost_usd": t["cost_usd"]})
    total = llm_totals(llm.calls)
    invoice_days = sum(d["open_invoices"] for d in per_day)
    first, rest = per_day[0], per_day[1:]
    rest_cost = sum(d["cost_usd"] for d in rest)
    rest_inv = sum(d["open_invoices"] for d in rest)
    per_invoice_day = total["cost_usd"] / invoice_days if invoice_days else 0.0
    return {
        "days": days, "business_days": len(per_day), "customers": customers,
        "open_invoices_first_day": first["open_invoices"], "invoice_days": invoice_days,
        "model": policy.llm.models["score"], "batch_size": policy.llm.batch_size, **total,
        "asked": sum(d["asked"] for d in per_day), "cached": sum(d["cached"] for d in per_day),
        "fallback": sum(sum(d["fallback"].values()) for d in per_day),
        "calls_per_invoice_day": round(total["llm_calls"] / invoice_days, 5) if invoice_days else 0.0,
        "cost_per_invoice_day_usd": round(per_invoice_day, 7),
        "first_day": {"calls": first["calls"], "cost_usd": first["cost_usd"],
                      "cost_per_invoice_usd": round(first["cost_usd"] / max(1, first["open_invoices"]), 7)},
        "after_first_day": {"calls": sum(d["calls"] for d in rest), "cost_usd": round(rest_cost, 6),
                            "cost_per_invoice_day_usd": round(rest_cost / rest_inv, 7) if rest_inv else 0.0},
        "reference_usd_per_invoice_day": REFERENCE_USD,
        "times_cheaper_than_reference": round(REFERENCE_USD / per_invoice_day, 1) if per_invoice_day else None,
        "per_day": per_day,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--customers", type=int, default=240)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--start", default="2026-11-02")
    ap.add_argument("--brief", action="store_true", help="leave out the per-day rows")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = replay(args.days, args.customers, args.seed, dt.date.fromisoformat(args.start))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if args.brief:
        out.pop("per_day")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
