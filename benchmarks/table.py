"""The whole speed-and-scale table in one command (issue 24's goals beside what this machine does);
each row is one run of another benchmark in its own process, one after the other (never two at once:
on a small machine they would time each other). Prints one JSON object; `--markdown` also prints the
table for a note or benchmarks/README.md.

    python benchmarks/table.py                    # fixed cost, 10k, 100k, the simulator year
    python benchmarks/table.py --sizes 10000 --partitions 1 2 4
    python benchmarks/table.py --sizes 1000000 --skip-simulator   # the 1M row (about 6 GB of memory)
    python benchmarks/table.py --quick            # small sizes: checks the table runs (seconds, not a measure)

`make bench-table` runs the default set. Rows that fail keep their error, the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ARFLOW = str(Path(sys.executable).parent / "arflow")
# Issue 24's goals, for the table's last column (seconds; None: no goal stated).
GOALS = {"help": 1.0, "argument_error": 1.0, "demo_run": 5.0, 100_000: 15.0, 1_000_000: 120.0,
         "simulator_year": 90.0}


def _timed(cmd: list[str], env: dict, timeout: int) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    return time.perf_counter() - began, p


def _json_of(p: subprocess.CompletedProcess) -> dict:
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"exit {p.returncode}, no JSON: {p.stderr.strip().splitlines()[-1:] or ''}")


def fixed_cost(env: dict, as_of: str) -> list[dict]:
    """`arflow --help`, an argument error, and the demo's daily run (its own temporary Prefect server
    unless PREFECT_API_URL names a running one)."""
    rows = []
    for name, cmd in (("help", [ARFLOW, "--help"]), ("argument_error", [ARFLOW, "run", "--mode", "nope"])):
        seconds, _ = _timed(cmd, env, 60)
        rows.append({"row": name, "seconds": round(seconds, 2), "goal_seconds": GOALS[name]})
    with tempfile.TemporaryDirectory() as tmp:
        run_env = {**env, "ARFLOW_DATA_DIR": tmp, "ARFLOW_DB_URL": f"sqlite:///{tmp}/l.db"}
        _timed([ARFLOW, "seed-demo", "--as-of", as_of, "--seed", "42"], run_env, 300)
        seconds, p = _timed([ARFLOW, "run", "--as-of", as_of, "--source", "demo", "--json"], run_env, 600)
        row = {"row": "demo_run", "seconds": round(seconds, 2), "goal_seconds": GOALS["demo_run"],
               "prefect_server": "running" if env.get("PREFECT_API_URL") else "temporary (start-up included)"}
        try:
            row["open_invoices"] = _json_of(p)["open_invoices"]
        except (RuntimeError, ValueError, KeyError) as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows


def daily_runs(env: dict, sizes: list[int], partitions: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        for parts in partitions:
            cmd = [sys.executable, str(HERE / "daily_run.py"), "--invoices", str(n), "--partitions", str(parts)]
            row = {"row": f"daily_run {n:,}", "invoices": n, "partitions": parts, "goal_seconds": GOALS.get(n)}
            try:
                _, p = _timed(cmd, env, 7200)
                out = _json_of(p)
                row.update(seconds=out["seconds"], peak_rss_mb=out["peak_rss_mb"], hops_seconds=out["hops_seconds"])
                if n == 1_000_000:
                    row["goal_peak_rss_mb"] = 2048
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                row["error"] = str(exc)
            rows.append(row)
    return rows


def simulator(env: dict, days: int, customers: int) -> dict:
    row = {"row": f"simulator {days} days, {customers} customers",
           "goal_seconds": GOALS["simulator_year"] if (days, customers) == (365, 500) else None}
    try:
        _, p = _timed([sys.executable, str(HERE / "simulate.py"), "--days", str(days), "--customers", str(customers)],
                      env, 7200)
        out = _json_of(p)
        row.update(seconds=out["seconds"], peak_rss_mb=out["peak_rss_mb"], dso_countback=out["dso_countback"])
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        row["error"] = str(exc)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| row | partitions | seconds | peak RSS (MB) | goal (s) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r.get('partitions', '')} | {r.get('seconds', r.get('error', ''))} | "
                     f"{r.get('peak_rss_mb', '')} | {r.get('goal_seconds') or ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--partitions", type=int, nargs="+", default=[1])
    ap.add_argument("--as-of", default="2026-11-23")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--skip-simulator", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the table runs")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.days, args.customers = [500], 10, 30
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    rows = fixed_cost(env, args.as_of)
    rows += daily_runs(env, args.sizes, args.partitions)
    if not args.skip_simulator:
        rows.append(simulator(env, args.days, args.customers))
    print(json.dumps({"rows": rows, "cpus": os.cpu_count(), "quick": args.quick}))
    if args.markdown:
        print(markdown(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
