"""Backtest a scorer against invoices an AR clerk labelled (tone, escalation) before it may send.

The label file holds the scorer's inputs per invoice and the clerk's two labels. The rules score the
rows; with a model, the model scores them as it would in a run (same prompt, same guardrails, no
cache). Agreement is the share of invoices whose predicted value equals the label, per field; the
confusion tables put labels in rows and predictions in columns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd

from arflow.policy import Policy
from tasks.score import ESCALATIONS, TONES, score

BOOL = ["high_arr", "at_risk", "chronic_late", "first_time_late", "payment_failed"]
REQUIRED = ["invoice_id", "customer_id", "lane", "days_past_due", "currency", "effective_balance_minor", "segment",
            "paid_count", "avg_days_late", "late_count_12m", "label_tone", "label_escalation"] + BOOL


class LabelError(ValueError):
    pass


def load_labels(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"invoice_id": str, "customer_id": str, "owner_csm_email": str, "last_reply": str})
    except FileNotFoundError:
        raise LabelError(f"no such label file: {path}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise LabelError(f"{path}: missing columns {missing}")
    bad = df[~df["label_tone"].isin(TONES) | ~df["label_escalation"].isin(ESCALATIONS)]
    if len(bad):
        raise LabelError(f"{path}: rows {list(bad.index + 2)} have a tone or escalation label outside "
                         f"{list(TONES)} / {list(ESCALATIONS)}")
    for c in BOOL:
        df[c] = df[c].astype(str).str.lower().isin(["true", "1", "yes"])
    for c in ("open_dispute", "opt_out", "paused", "promise_to_pay", "payment_plan", "written_off"):
        df[c] = False
    for c in ("max_days_late", "tenure_months", "nps", "arr_minor", "touches_90d", "replies_90d"):
        if c not in df:
            df[c] = pd.NA
    df["renewal_date"] = pd.to_datetime(df.get("renewal_date"), errors="coerce")
    df["owner_csm_email"] = df.get("owner_csm_email")
    df["effective_balance_minor"] = df["effective_balance_minor"].astype("int64")
    df["days_past_due"] = df["days_past_due"].astype("int64")
    df["max_days_late"] = df["max_days_late"].fillna(0).astype("int64")
    return df


def confusion(labels: pd.Series, predicted: pd.Series, values) -> dict:
    t = pd.crosstab(pd.Categorical(labels, values), pd.Categorical(predicted, values), dropna=False)
    return {str(a): {str(b): int(t.loc[a, b]) for b in values} for a in values}


def run_backtest(labels: pd.DataFrame, policy: Policy, llm=None, *, as_of: dt.date) -> dict:
    rules = score(labels, policy)
    scorer, stats = "rules", None
    result = rules
    if llm is not None:
        from tasks.ai_score import model_score

        context = labels[["customer_id"]].assign(
            touches_90d=labels["touches_90d"].fillna(0).astype(int), last_touch_days_ago=None,
            replies_90d=labels["replies_90d"].fillna(0).astype(int),
            last_reply=labels.get("last_reply")).drop_duplicates("customer_id")
        result, _, s = model_score(rules, policy, llm, as_of=as_of, context=context)
        scorer, stats = "model", s.as_dict()
    tone_ok = result["tone"] == labels["label_tone"]
    esc_ok = result["escalation"] == labels["label_escalation"]
    out = {
        "scorer": scorer, "n": int(len(labels)),
        "tone_agreement": round(float(tone_ok.mean()), 4), "escalation_agreement": round(float(esc_ok.mean()), 4),
        "threshold": policy.llm.backtest_threshold,
        "confusion": {"tone": confusion(labels["label_tone"], result["tone"], TONES),
                      "escalation": confusion(labels["label_escalation"], result["escalation"], ESCALATIONS)},
        "disagreements": result.loc[~(tone_ok & esc_ok), ["invoice_id", "lane", "tone", "escalation"]].assign(
            label_tone=labels["label_tone"], label_escalation=labels["label_escalation"]).to_dict("records"),
        "model": stats,
    }
    out["passed"] = bool(out["tone_agreement"] >= out["threshold"] and out["escalation_agreement"] >= out["threshold"])
    if llm is not None and stats["fallback"]:
        # A backtest the model did not answer (fallbacks to the rules) does not count for the model.
        out["passed"] = False
        out["why_not"] = f"the model did not answer for every invoice: {stats['fallback']}"
    return out


def fingerprint(path: Path) -> str:
    return f"{path} sha256:{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}"


def record(ledger, result: dict, path: Path, prompt_version: str, model: str | None) -> None:
    ledger.record_backtest({
        "scorer": result["scorer"], "model": model, "prompt_version": prompt_version, "labels": fingerprint(path),
        "n": result["n"], "tone_agreement": result["tone_agreement"],
        "escalation_agreement": result["escalation_agreement"], "threshold": result["threshold"],
        "passed": result["passed"], "result": json.dumps(result, default=str)})
