"""The simulator's numbers (docs/simulator.md): from the simulated world's truth (what was
billed, paid, written off, who churned) and the ledger the flows wrote (what was sent, what waited
for a person). DSO uses the KPI formulas of tasks/kpis.py. Pure functions; no Prefect."""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arflow.money import format_minor
from arflow.policy import Policy
from connectors.simulated import CURRENCY
from tasks.kpis import PERIOD_DAYS, dso_countback, dso_standard

HEADLINE = [  # (key, label, better when)
    ("dso_countback", "DSO, countback (days)", "lower"),
    ("best_possible_dso", "Best possible DSO (days)", "lower"),
    ("average_days_delinquent", "Average days delinquent", "lower"),
    ("days_to_settle", "Days to settle (issue to payment)", "lower"),
    ("bad_debt_rate", "Bad-debt rate (of invoices due 120+ days before the end)", "lower"),
    ("touches_per_invoice", "Customer e-mails per invoice", "lower"),
    ("owner_escalations_per_week", "Owner escalations per week", "lower"),
    ("human_decisions_per_week", "Human decisions per week", "lower"),
    ("wrong_tone_touches", "Wrong-tone touches", "lower"),
    ("arr_lost_to_churn_minor", "ARR lost to churn (USD)", "lower"),
]
TIERS = ("current", "early", "late", "critical")


@dataclass
class Tracker:
    """Day-end AR of the world, for DSO over time."""

    start: dt.date
    warm_up_days: int
    ar: list = field(default_factory=list)          # minor units, open and not written off
    current_ar: list = field(default_factory=list)  # of which not yet due
    sales: list = field(default_factory=list)       # billed that day

    def end_of_day(self, world, day: dt.date) -> None:
        ar = cur = sales = 0
        for inv in world.bills.values():
            if inv.issued == day:
                sales += inv.amount_minor
            if inv.paid_on is None and not inv.written_off:
                ar += inv.open_minor
                if inv.due >= day:
                    cur += inv.open_minor
        self.ar.append(ar)
        self.current_ar.append(cur)
        self.sales.append(sales)

    def points(self, every: int = 7) -> pd.DataFrame:
        """DSO (countback and standard), best possible DSO and ADD, weekly, once a month of sales exists."""
        sales = np.asarray(self.sales, dtype=np.int64)
        rows = []
        for k in range(PERIOD_DAYS - 1, len(self.ar), every):
            periods = [int(sales[max(0, k + 1 - (j + 1) * PERIOD_DAYS):k + 1 - j * PERIOD_DAYS].sum())
                       for j in range(12) if k + 1 - j * PERIOD_DAYS > 0]
            window = min(90, k + 1)
            sold = int(sales[k + 1 - window:k + 1].sum())
            std = dso_standard(self.ar[k], sold, window)
            best = dso_standard(self.current_ar[k], sold, window)
            rows.append({"day": k, "date": (self.start + dt.timedelta(days=k)).isoformat(),
                         "dso_countback": dso_countback(self.ar[k], periods), "dso_standard": std,
                         "best_possible_dso": best,
                         "average_days_delinquent": None if std is None or best is None else round(std - best, 1)})
        return pd.DataFrame(rows, columns=["day", "date", "dso_countback", "dso_standard", "best_possible_dso",
                                           "average_days_delinquent"])


def _mean(s: pd.Series) -> float | None:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return round(float(s.mean()), 1) if len(s) else None


def bad_debt(inv: pd.DataFrame, end: dt.date, after_days: int) -> dict:
    """Bad debt on one cohort for every policy: the invoices due at least `after_days` before
    `end`, and what of them was not collected, written off or still open, over what they billed.
    (Counting every write-off but only the old open invoices would charge a policy that writes off
    at day 60 with debts that a policy which never writes off has not had time to show.)
    `inv`: due, amount, paid (minor units), paid_on (None while open), written_off."""
    due_by = end - dt.timedelta(days=after_days)
    old = inv[inv["due"] <= due_by] if not inv.empty else inv
    short = old["amount"] - old["paid"] if not old.empty else pd.Series(dtype="int64")
    written_off = int(short[old["written_off"].astype(bool)].sum()) if not old.empty else 0
    uncollected = int(short[~old["written_off"].astype(bool) & old["paid_on"].isna()].sum()) if not old.empty else 0
    billed = int(old["amount"].sum()) if not old.empty else 0
    return {"bad_debt_cohort": {"due_by": due_by.isoformat(), "invoices": int(len(old)), "billed_usd_minor": billed},
            "bad_debt_minor": written_off + uncollected, "written_off_minor": written_off,
            "uncollected_minor": uncollected,
            "bad_debt_rate": round((written_off + uncollected) / billed, 4) if billed else None}


def _guardrail_counts(box, decisions) -> dict:
    """Customer e-mails rendered (receipts aside), and how many of them the guardrails blocked:
    still blocked, or settled by a person since (their decision's kind says so)."""
    if box.empty:
        return {"messages_rendered": 0, "messages_blocked": 0}
    mail = box[(box["channel"] == "email") & (box["step"] != "receipt")]
    blocked = set(mail.loc[mail["status"] == "blocked", "message_key"])
    if not decisions.empty:
        keys = decisions.loc[decisions["kind"] == "guardrail_blocked", "decision_key"]
        blocked |= set(keys.str.split(":blocked").str[0])
    return {"messages_rendered": int(mail["message_key"].nunique()), "messages_blocked": len(blocked)}


def summarize(world, ledger, tracker: Tracker, policy: Policy, behaviour: dict, *, days: int, start: dt.date,
              series: bool = True) -> dict:
    a = behaviour["assumptions"]
    end = start + dt.timedelta(days=days - 1)
    warm = min(int(a["warm_up_days"]), max(days - 1, 0))
    measured_from = start + dt.timedelta(days=warm)
    weeks = max(days / 7, 1 / 7)

    pts = tracker.points()
    window = pts[pts["day"] >= warm] if (pts["day"] >= warm).any() else pts
    inv = pd.DataFrame([{
        "invoice_id": i.id, "customer_id": i.customer.id, "issued": i.issued, "due": i.due,
        "amount": i.amount_minor, "paid": i.paid_minor, "paid_on": i.paid_on, "written_off": i.written_off,
        "deepest": max(i.deepest_days_late, ((i.paid_on or end) - i.due).days), "disputed": i.disputed,
    } for i in world.bills.values()], columns=["invoice_id", "customer_id", "issued", "due", "amount", "paid",
                                                  "paid_on", "written_off", "deepest", "disputed"])
    billed = int(inv["amount"].sum()) if not inv.empty else 0
    debt = bad_debt(inv, end, int(a["bad_debt_after_days"]))

    # Days to settle and per-tier results: invoices billed after the warm-up with time to settle.
    settle_until = end - dt.timedelta(days=75)
    cohort = inv[(inv["issued"] >= measured_from) & (inv["issued"] <= settle_until)] if not inv.empty else inv
    paid = cohort[cohort["paid_on"].notna()]
    days_to_settle = _mean(paid.apply(lambda r: (r["paid_on"] - r["issued"]).days, axis=1)) if not paid.empty else None
    mature = inv[inv["due"] <= end - dt.timedelta(days=90)] if not inv.empty else inv
    per_tier = {}
    for tier in TIERS:
        grp = mature[mature["deepest"].map(policy.lane_of_day) == tier] if not mature.empty else mature
        got = grp[grp["paid_on"].notna()]
        per_tier[tier] = {
            "invoices": int(len(grp)),
            "recovery_rate": round(float(grp["paid"].sum() / grp["amount"].sum()), 3) if len(grp) else None,
            "days_to_pay_after_due": _mean(got.apply(lambda r: (r["paid_on"] - r["due"]).days, axis=1))
            if not got.empty else None}

    box = ledger.outbox()
    sent = box[box["status"] == "sent"] if not box.empty else box
    cust = {c.id: c for c in world.accounts}
    mail = sent[(sent["channel"] == "email") & (sent["step"] != "receipt")] if not sent.empty else sent
    owner = sent[sent["channel"].isin(["slack", "crm_task"])] if not sent.empty else sent
    firm = mail[mail["tone"].isin(["firm", "escalating"]) & ~mail["needs_approval"].astype(bool)] if not mail.empty else mail
    wrong = firm[firm["customer_id"].map(lambda c: c in cust and cust[c].sensitive)] if not firm.empty else firm
    decisions = ledger.decisions()
    churned = [c for c in world.accounts if c.churned_on is not None]
    why: dict[str, int] = {}
    for _cid, _day, reason in world.churn_log:
        why[reason] = why.get(reason, 0) + 1
    charges = list(world.charges.values())

    out = {
        "measured_from": measured_from.isoformat(), "until": end.isoformat(),
        "dso_countback": _mean(window["dso_countback"]), "dso_standard": _mean(window["dso_standard"]),
        "best_possible_dso": _mean(window["best_possible_dso"]),
        "average_days_delinquent": _mean(window["average_days_delinquent"]),
        "final_dso_countback": None if pts.empty else pts["dso_countback"].iloc[-1],
        "days_to_settle": days_to_settle, "settled_share": round(len(paid) / len(cohort), 3) if len(cohort) else None,
        "invoices_billed": int(len(inv)), "billed_usd_minor": billed,
        **debt,
        "by_tier": per_tier,
        "touches_per_invoice": round(len(mail) / len(inv), 2) if len(inv) else None,
        "messages": int(mail["message_key"].nunique()) if not mail.empty else 0,
        **_guardrail_counts(box, decisions),
        "owner_escalations_per_week": round((owner["message_key"].nunique() if not owner.empty else 0) / weeks, 1),
        "human_decisions_per_week": round(len(decisions) / weeks, 1),
        "decisions_by_kind": decisions["kind"].value_counts().sort_index().to_dict() if not decisions.empty else {},
        "wrong_tone_touches": int(wrong["message_key"].nunique()) if not wrong.empty else 0,
        "customers_churned": len(churned), "churned_by_reason": dict(sorted(why.items())),
        "arr_lost_to_churn_minor": sum(c.arr_minor for c in churned),
        "auto_charges": len(charges), "auto_charges_failed": sum(not c.ok for c in charges),
        "disputes": int(inv["disputed"].sum()) if not inv.empty else 0,
        "promises": int(len(ledger.promises())),
        "payment_plans": int(len(ledger.payment_plans())),
        "write_offs": int(inv["written_off"].sum()) if not inv.empty else 0,
    }
    if series:
        out["series"] = pts[["date", "dso_countback", "best_possible_dso"]].to_dict("records")
    return out


# ---- comparing policies under the three response assumptions -------------------------------------
def comparison(results: list[dict], policies: list[str], scenarios: list[str]) -> dict:
    by = {(r["scenario"], r["policy"]): r for r in results}
    table = []
    for key, label, better in HEADLINE:
        row = {"metric": key, "label": label, "better": better}
        for s in scenarios:
            for p in policies:
                row[f"{p}@{s}"] = by[(s, p)].get(key)
        table.append(row)
    sensitivity = []
    if len(policies) >= 2:
        base, other = policies[0], policies[1]
        for s in scenarios:
            b, o = by[(s, base)], by[(s, other)]
            sensitivity.append({"scenario": s, **{
                f"{k}_change": _diff(o.get(k), b.get(k)) for k, _l, _b in HEADLINE}})
    return {"policies": policies, "scenarios": scenarios, "table": table, "sensitivity": sensitivity,
            "runs": results}


def _diff(new, old):
    if new is None or old is None:
        return None
    return round(new - old, 4 if isinstance(new, float) and abs(new) < 1 else 1)


SHARES = {"bad_debt_rate", "recovery_rate"}   # the metrics that are a share (written as a percentage)
MONEY = {"arr_lost_to_churn_minor"}            # integer minor units of the world's CURRENCY, written as major units


def _fmt(v, share: bool = False, money: bool = False) -> str:
    """A table cell: a share as a percentage, money in major units from its integer minor units,
    any other number as itself (days, counts): 0.7 decisions a week is "0.70", not "70.0%"."""
    if v is None:
        return "n/a"
    if share:
        return f"{v:.1%}".replace("-0.0%", "0.0%")  # a change that rounds away has no sign
    if money:
        return format_minor(int(v), CURRENCY, grouping=True)
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(report: dict) -> str:
    pols, scens = report["policies"], report["scenarios"]
    first = report["runs"][0]
    lines = [f"# Policy simulation: {' vs '.join(pols)}", "",
             f"{first['customers']} simulated customers, {first['days']} days from {first['start']}, seed "
             f"{first['seed']}; metrics from {first['measured_from']} (after the warm-up). Behaviour "
             f"{first['behaviour_version']}: timing fitted to the IBM late-payment data, responses assumed "
             "(simulation.yaml). These are the model's numbers, not a forecast.", ""]
    cols = [f"{p} ({s})" for s in scens for p in pols]
    lines += ["| metric | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for row in report["table"]:
        lines.append(f"| {row['label']} | " + " | ".join(_fmt(row[f'{p}@{s}'], row["metric"] in SHARES, row["metric"] in MONEY)
                                                         for s in scens for p in pols) + " |")
    if report["sensitivity"]:
        base, other = pols[0], pols[1]
        lines += ["", f"## Sensitivity: {other} minus {base}, under each response assumption", "",
                  "| scenario | DSO countback | days to settle | bad-debt rate | wrong tone | ARR lost to churn |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for s in report["sensitivity"]:
            lines.append(f"| {s['scenario']} | {_fmt(s['dso_countback_change'])} | {_fmt(s['days_to_settle_change'])} | "
                         f"{_fmt(s['bad_debt_rate_change'], share=True)} | {_fmt(s['wrong_tone_touches_change'])} | "
                         f"{_fmt(s['arr_lost_to_churn_minor_change'], money=True)} |")
    lines += ["", "Per tier (recovery rate, days to pay after the due date), central or first scenario:", ""]
    scen = "central" if "central" in scens else scens[0]
    lines += ["| policy | " + " | ".join(TIERS) + " |", "| --- |" + " --- |" * len(TIERS)]
    for r in report["runs"]:
        if r["scenario"] != scen:
            continue
        cells = [f"{_fmt(r['by_tier'][t]['recovery_rate'], share=True)} / {_fmt(r['by_tier'][t]['days_to_pay_after_due'])} d"
                 for t in TIERS]
        lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    priced = [r for r in report["runs"] if r.get("llm")]
    if priced:
        lines += ["", "The model in the simulated policy (recording fake: cost only, the answers are not a model's):", "",
                  "| policy | scenario | calls | input tokens | output tokens | cache reads | cost (USD) | per invoice per day |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in priced:
            u = r["llm"]
            lines.append(f"| {r['policy']} | {r['scenario']} | {u['llm_calls']:,} | {u['input_tokens']:,} | "
                         f"{u['output_tokens']:,} | {u['cache_read_tokens']:,} | {u['cost_usd']:.4f} | "
                         f"{u['cost_per_invoice_day_usd']:.7f} |")
    return "\n".join(lines) + "\n"


def html_page(report: dict) -> str:
    """One self-contained page: the tables and a DSO-over-time chart per scenario (plotly inlined)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    scens = report["scenarios"]
    fig = make_subplots(rows=1, cols=len(scens), subplot_titles=[f"DSO countback, {s}" for s in scens],
                        shared_yaxes=True)
    for n, s in enumerate(scens, start=1):
        for r in report["runs"]:
            if r["scenario"] != s or not r.get("series"):
                continue
            pts = pd.DataFrame(r["series"])
            fig.add_trace(go.Scatter(x=pts["date"], y=pts["dso_countback"], mode="lines", name=f"{r['policy']} ({s})"),
                          row=1, col=n)
    fig.update_layout(height=420, margin={"t": 40, "l": 40, "r": 10, "b": 40})
    bars = go.Figure()
    for p in report["policies"]:
        bars.add_trace(go.Bar(name=p, x=[f"{k} ({s})" for s in scens for k in ("bad debt %",)],
                              y=[100 * (next(r for r in report["runs"] if r["policy"] == p and r["scenario"] == s)
                                        ["bad_debt_rate"] or 0) for s in scens]))
    bars.update_layout(barmode="group", height=320, title="Bad-debt rate by scenario")
    md = markdown(report)
    body = _md_tables_to_html(md)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>arflow policy simulation</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
            "</head><body>" + body + fig.to_html(full_html=False, include_plotlyjs=True, div_id="dso-over-time")
            + bars.to_html(full_html=False, include_plotlyjs=False, div_id="bad-debt")
            + "<script type='application/json' id='report'>" + html.escape(json.dumps(
                {k: v for k, v in report.items() if k != "runs"}, default=str)) + "</script></body></html>")


def _md_tables_to_html(md: str) -> str:
    out, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-", " "}]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)
