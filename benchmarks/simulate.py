"""Time one policy simulation; print one JSON object.

    python benchmarks/simulate.py --days 365 --customers 500 [--policy default] [--seed 1]

Seconds in all and per simulated business day (the checkpoint and the daily flow's tasks, the
world, the clerk), with the run's headline numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--policy", default="default")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from flows.simulate import simulate

    began = time.perf_counter()
    r = simulate(days=args.days, customers=args.customers, policy=args.policy, seed=args.seed, series=False)
    seconds = time.perf_counter() - began
    from arflow import businessdays as bd
    from arflow.policy import load_policy
    from arflow.config import Settings

    country = load_policy(Settings.from_env().policy_path).company_country
    start = dt.date.fromisoformat(r["start"])
    business_days = sum(bd.company_business_day(start + dt.timedelta(days=k), country) for k in range(args.days))
    print(json.dumps({
        "days": args.days, "customers": args.customers, "policy": args.policy, "seconds": round(seconds, 1),
        "business_days": business_days,
        "seconds_per_business_day": round(seconds / max(business_days, 1), 2), "invoices_billed": r["invoices_billed"],
        "dso_countback": r["dso_countback"], "days_to_settle": r["days_to_settle"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
