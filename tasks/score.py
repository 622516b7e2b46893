"""Score: deterministic rules for risk (0-100), tone and escalation. The same input gives the same
output. A model may later suggest tone and escalation behind the same interface (``score``), never
the lane (tier) or a stop.

Risk score, additive, clipped to 0..100:

| part | points |
| --- | --- |
| lane | current 5, early 20, late 45, critical 70 |
| days past due (if overdue) | +1 per 6 days, at most +15 |
| chronic late payer (policy.scoring) | +15 |
| first time late (no late payment in 12 months) | -5 |
| account at risk (health at_risk or renewal within the window) | +5 |
| high-value balance (>= policy.scoring.high_value_minor) | +5 |
| open dispute | +5 |
| learned late-payment model (where trained: p_late) | round(20 x p_late) - 10, so -10..+10 |

Tone: friendly in current and early, firm in late, escalating in critical; then
- an at-risk account is never firm or escalating by automated message: friendly (the CSM or AE
  gets the personal touch through the escalation);
- a strategic or high-ARR account with a balance below the high-value line is friendly in early
  and late (the owner gets a heads-up);
- a chronic late payer is not softened by the strategic/high-ARR rule (the at-risk rule still holds).

Escalation: finance in critical; csm (owner if no CSM) for an overdue at-risk account; owner for a
late strategic/high-ARR account, and for an early invoice of high value; otherwise none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arflow.policy import Policy

LANE_BASE = {"current": 5, "early": 20, "late": 45, "critical": 70}
TONES = ("friendly", "firm", "escalating")
ESCALATIONS = ("none", "owner", "csm", "finance")


def score(df: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    s = policy.scoring
    out = df.copy()
    dpd = out["days_past_due"].to_numpy()
    balance = out["effective_balance_minor"].to_numpy()
    chronic = out["chronic_late"].to_numpy(dtype=bool)
    at_risk = out["at_risk"].to_numpy(dtype=bool)
    high_value = balance >= s.high_value_minor
    big_account = (out["segment"] == "strategic").to_numpy(dtype=bool) | out["high_arr"].to_numpy(dtype=bool)
    lane = out["lane"].to_numpy()

    risk = out["lane"].map(LANE_BASE).to_numpy(dtype="int64", copy=True)
    risk += np.minimum(15, np.maximum(0, dpd) // 6)
    risk += np.where(chronic, 15, 0)
    risk -= np.where(out["first_time_late"].to_numpy(dtype=bool), 5, 0)
    risk += np.where(at_risk, 5, 0)
    risk += np.where(high_value, 5, 0)
    risk += np.where(out["open_dispute"].to_numpy(dtype=bool), 5, 0)
    if "p_late" in out:  # tasks.late_model; NaN where no model could be trained
        p = out["p_late"].to_numpy(dtype="float64")
        risk += np.where(np.isnan(p), 0, np.rint(20 * np.nan_to_num(p)) - 10).astype("int64")
    out["risk_score"] = np.clip(risk, 0, 100).astype("int64")

    tone = np.select([lane == "late", lane == "critical"], ["firm", "escalating"], "friendly")
    soften = big_account & ~high_value & ~chronic & np.isin(lane, ["early", "late"])
    tone = np.where(soften | at_risk, "friendly", tone)
    out["tone"] = tone

    has_csm = out["owner_csm_email"].notna().to_numpy(dtype=bool)
    overdue = dpd > 0
    escalation = np.select(
        [lane == "critical", at_risk & overdue, (lane == "late") & big_account, (lane == "early") & high_value],
        ["finance", np.where(has_csm, "csm", "owner"), "owner", "owner"], "none")
    out["escalation"] = escalation
    out["escalation_reason"] = np.select(
        [lane == "critical", at_risk & overdue, (lane == "late") & big_account, (lane == "early") & high_value],
        ["critical lane", "at-risk account overdue", "late invoice of a strategic or high-ARR account",
         "high-value invoice overdue"], "")
    out["scorer"] = "rules"
    return out
