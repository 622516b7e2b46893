"""The run's summary: where every open invoice ended, buckets, lanes, holds, quarantine, actions."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from arflow.money import format_amount, format_minor
from tasks.extract import BUCKET_LABELS, BUCKETS

OUTCOMES = ("action_today", "no_action_due", "held", "quarantined")
LANES = ("current", "early", "late", "critical")
OUTCOME_COLUMNS = ["source_row", "invoice_id", "customer_id", "outcome", "reason", "lane", "bucket",
                   "days_past_due", "balance_minor", "currency", "risk_score", "tone", "escalation"]


def outcome_rows(planned: pd.DataFrame, quarantined: pd.DataFrame) -> pd.DataFrame:
    """One row per open invoice read: the planned ones and the quarantined ones."""
    p = planned.assign(balance_minor=planned["effective_balance_minor"])
    p = p.reindex(columns=OUTCOME_COLUMNS)
    q = quarantined.assign(outcome="quarantined").reindex(columns=OUTCOME_COLUMNS)
    frames = [f for f in (p, q) if not f.empty]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OUTCOME_COLUMNS)
    return out.sort_values("source_row", kind="stable").reset_index(drop=True)


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def bucket_totals(planned: pd.DataFrame) -> tuple[dict, dict]:
    """(by_bucket, by_bucket_by_currency). by_bucket is {count, amount} per bucket when the run has
    one currency; with several it is {currency: {count, amount}} per bucket. by_bucket_by_currency
    always has the per-currency shape."""
    per_currency: dict[str, dict] = {}
    if not planned.empty:  # an invoice with nothing left to pay is not open, whatever the source says
        from tasks.schedule import aging_rows  # instalments each in their own bucket

        planned = aging_rows(planned[planned["effective_balance_minor"] > 0])
    currencies = sorted(planned["currency"].dropna().unique()) if not planned.empty else []
    for b in BUCKETS:
        rows = planned[planned["bucket"] == b] if not planned.empty else planned
        per_currency[b] = {}
        for cur in currencies:
            sub = rows[rows["currency"] == cur]
            per_currency[b][cur] = {"count": int(len(sub)),
                                    "amount": format_minor(int(sub["effective_balance_minor"].sum()), cur)}
    if len(currencies) == 1:
        by_bucket = {b: per_currency[b][currencies[0]] for b in BUCKETS}
    elif not currencies:
        by_bucket = {b: {"count": 0, "amount": "0"} for b in BUCKETS}
    else:
        by_bucket = per_currency
    return by_bucket, per_currency


def summarize(*, as_of: dt.date, run_id: str, source: str, mode: str, policy_version: str,
              outcomes: pd.DataFrame, planned: pd.DataFrame, actions: pd.DataFrame, reconciliation: dict,
              data_quality: dict, outbox_new: int, notes: list[str]) -> dict:
    by_bucket, by_currency = bucket_totals(planned)
    lanes = planned["lane"].value_counts() if not planned.empty else pd.Series(dtype=int)
    oc = outcomes["outcome"].value_counts()
    summary = {
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "source": source,
        "mode": mode,
        "policy_version": policy_version,
        "open_invoices": int(len(outcomes)),
        "currencies": sorted(planned["currency"].unique().tolist()) if not planned.empty else [],
        "by_lane": {lane: int(lanes.get(lane, 0)) for lane in LANES},
        "by_bucket": by_bucket,
        "by_bucket_by_currency": by_currency,
        "outcomes": {o: int(oc.get(o, 0)) for o in OUTCOMES},
        "held": _counts(outcomes.loc[outcomes["outcome"] == "held", "reason"]),
        "quarantined": _counts(outcomes.loc[outcomes["outcome"] == "quarantined", "reason"]),
        "no_action_due": _counts(outcomes.loc[outcomes["outcome"] == "no_action_due", "reason"]),
        "actions": _counts(actions["step"]) if not actions.empty else {},
        "outbox_new": int(outbox_new),
        "reconciliation": reconciliation,
        "data_quality": data_quality,
        "notes": notes,
    }
    return summary


def format_share(rate: float | None, digits: int = 1, none: str = "n/a") -> str:
    """A share (0.4872) as a percentage for people to read ("48.7%"); None as `none`."""
    return none if rate is None else f"{rate * 100:.{digits}f}%"


def _words(code: str) -> str:
    return str(code).replace("_", " ")


def aging_matrix(by_bucket_by_currency: dict) -> list[str]:
    """The aging as people read it: a row per bucket, a column per currency (count and amount), and
    the total of each currency; amounts formatted in their currency, never converted."""
    currencies = sorted({c for per in by_bucket_by_currency.values() for c in per})
    if not currencies:
        return ["none open"]
    lines = ["| bucket | " + " | ".join(currencies) + " |", "| --- |" + " ---: |" * len(currencies)]
    totals = {c: [0, 0] for c in currencies}
    for b in BUCKETS:
        cells = []
        for c in currencies:
            v = by_bucket_by_currency.get(b, {}).get(c, {"count": 0, "amount": "0"})
            cells.append(f"{format_amount(v['amount'], c)} ({v['count']})")
            totals[c][0] += v["count"]
            totals[c][1] += _minor(v["amount"], c)
        lines.append(f"| {BUCKET_LABELS[b]} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{format_amount(format_minor(totals[c][1], c), c)} ({totals[c][0]})**"
                                               for c in currencies) + " |")
    return lines


def _minor(amount: str, currency: str) -> int:
    from arflow.money import to_minor

    return to_minor(amount, currency)


def markdown(summary: dict) -> str:
    lines = [f"# Daily AR run {summary['as_of']}", "",
             f"Source `{summary['source']}`, mode `{summary['mode']}`, policy `{summary['policy_version']}`.", "",
             f"**{summary['open_invoices']} open invoices**: " + ", ".join(
                 f"{_words(k)} {v}" for k, v in summary["outcomes"].items()), ""]
    pilot = summary.get("pilot") or {}
    if pilot.get("enabled"):
        lines += [f"**Pilot:** {pilot['live_customers']} customer(s) live ({pilot['live_messages']} message(s)); "
                  f"{pilot['dry_run_customers']} in dry run ({pilot['dry_run_messages']} message(s) rendered, not "
                  "sent).", ""]
    rec = summary["reconciliation"]
    if rec["status"] == "skipped":
        lines += ["> **Reconciliation skipped: no aging report from the books.** Our aging is unchecked today.", ""]
    elif rec["status"] == "mismatched":
        lines += [f"> **Reconciliation: {len(rec['mismatched_customers'])} customer(s) differ from the books** "
                  f"(tolerance {rec['tolerance']}); their invoices are held: "
                  + ", ".join(rec["mismatched_customers"][:50]), ""]
    else:
        lines += [f"Reconciliation: matched the books (tolerance {rec['tolerance']}).", ""]
    lines += ["## Aging", "", *aging_matrix(summary["by_bucket_by_currency"])]
    lines += ["", "## Lanes", "", "| lane | invoices |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in summary["by_lane"].items()]
    for title, key, what in (("Held", "held", "reason"), ("Quarantined", "quarantined", "reason"),
                             ("Actions today", "actions", "step"), ("No action due", "no_action_due", "reason")):
        lines += ["", f"## {title}", ""]
        if summary[key]:
            lines += [f"| {what} | count |", "| --- | ---: |"] + [f"| {_words(k)} | {v} |" for k, v in summary[key].items()]
        else:
            lines.append("none")
    lines += ["", "## Data quality", "", "| hop | rows | quarantined | passed |", "| --- | ---: | ---: | --- |"]
    for hop, dq in summary["data_quality"].items():
        lines.append(f"| {hop} | {dq['rows']} | {dq['quarantined']} | {'yes' if dq['passed'] else '**no**'} |")
    if summary["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in summary["notes"]]
    return "\n".join(lines) + "\n"


def table_rows(summary: dict) -> list[dict]:
    rows = [{"section": "outcome", "key": k, "value": v} for k, v in summary["outcomes"].items()]
    rows += [{"section": "lane", "key": k, "value": v} for k, v in summary["by_lane"].items()]
    rows += [{"section": "held", "key": k, "value": v} for k, v in summary["held"].items()]
    rows += [{"section": "quarantined", "key": k, "value": v} for k, v in summary["quarantined"].items()]
    rows += [{"section": "action", "key": k, "value": v} for k, v in summary["actions"].items()]
    pilot = summary.get("pilot") or {}
    if pilot.get("enabled"):
        rows += [{"section": "pilot", "key": k, "value": pilot[k]}
                 for k in ("live_customers", "live_messages", "dry_run_customers", "dry_run_messages")]
    rows.append({"section": "reconciliation", "key": "status", "value": summary["reconciliation"]["status"]})
    return rows
