"""Scoring with Claude, behind the same interface as the rules (``tasks.score``), inside guardrails.

The rules score every invoice first. The model is then asked about the invoices that can get a
touch (no stop, overdue or in the pre-due window) whose inputs changed since their cached score,
whose next cadence step came due (the hash holds the stage, not the raw days), or whose cached
score is older than ``llm.rescore_after_days``. Several invoices go in one request; the fixed part
of the prompt is cached by the API.

What the model may change: risk score, tone, escalation and its reason, with a rationale. What it
may not (checked in code, after the answer): the lane and any stop (not in its schema: an extra
field makes the answer invalid); a tone harsher than the rules' tone; dropping an escalation the
rules raised. An entry that breaks a rule, or a whole answer that does not validate, keeps the
rules' result for those invoices, and each is counted by reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arflow.config import PROMPTS_DIR
from arflow.money import format_minor
from arflow.policy import Policy
from tasks.score import ESCALATIONS, TONES

PROMPT = "score_risk.j2"
TONE_RANK = {t: i for i, t in enumerate(TONES)}
STOP_FLAGS = ["open_dispute", "opt_out", "paused", "promise_to_pay", "payment_plan", "written_off"]
LATE_DAYS = 30  # p_late: the probability of payment more than this many days after the due date

SCORE_TOOL = {
    "name": "record_scores",
    "description": "Record the score of every invoice in the request, one entry per invoice_id.",
    "input_schema": {
        "type": "object",
        "properties": {"scores": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "invoice_id": {"type": "string"},
                "risk_score": {"type": "integer", "minimum": 0, "maximum": 100},
                "tone": {"type": "string", "enum": list(TONES)},
                "escalation": {"type": "string", "enum": list(ESCALATIONS)},
                "escalation_reason": {"type": "string", "maxLength": 200},
                "rationale": {"type": "string", "maxLength": 300},
            },
            "required": ["invoice_id", "risk_score", "tone", "escalation", "escalation_reason", "rationale"],
            "additionalProperties": False}}},
        "required": ["scores"], "additionalProperties": False},
}


class ScoreEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invoice_id: str
    risk_score: int = Field(ge=0, le=100)
    tone: Literal["friendly", "firm", "escalating"]
    escalation: Literal["none", "owner", "csm", "finance"]
    escalation_reason: str = Field(max_length=200)
    rationale: str = Field(max_length=300)


class ScoreAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scores: list[ScoreEntry]


def prompt_version(name: str = PROMPT) -> str:
    """The version on a prompt file's first line (``{#- version: X | ...``)."""
    first = (PROMPTS_DIR / name).read_text().splitlines()[0]
    return first.split("version:", 1)[1].split("|", 1)[0].strip()


def system_prompt(policy: Policy) -> str:
    from tasks.touches import environment

    b = policy.lanes
    return environment("en").get_template(PROMPT).render(
        early=b.early_from, late=b.late_from, critical=b.critical_from, renewal_days=policy.renewal_window_days,
        late_days=LATE_DAYS).strip()


def system_prompt_of(name: str) -> str:
    """A fixed prompt of prompts/ with no variables (triage)."""
    from tasks.touches import environment

    return environment("en").get_template(name).render().strip()


@dataclass
class ScoreStats:
    eligible: int = 0
    cached: int = 0
    asked: int = 0
    by_model: int = 0
    fallback: dict[str, int] = field(default_factory=dict)  # reason -> invoices that kept the rules' result

    def fell_back(self, reason: str, n: int = 1) -> None:
        if n:
            self.fallback[reason] = self.fallback.get(reason, 0) + n

    def as_dict(self) -> dict:
        return {"eligible": self.eligible, "cached": self.cached, "asked": self.asked, "by_model": self.by_model,
                "fallback": dict(self.fallback)}


def stage(dpd: pd.Series, policy: Policy) -> pd.Series:
    """The cadence stage an invoice is in: the last step day it has reached (pre-due steps count by
    calendar days before the due date). A new stage means a new step is due: the model is asked again."""
    days = sorted({s.sort_day for s in policy.steps})
    edges = np.array(days)
    idx = np.searchsorted(edges, dpd.to_numpy(dtype="int64"), side="right") - 1
    return pd.Series(np.where(idx >= 0, edges[np.clip(idx, 0, None)], -999), index=dpd.index)


def eligible(df: pd.DataFrame, policy: Policy) -> pd.Series:
    """Invoices a touch could reach soon: no stop, overdue or within the pre-due window."""
    window = max([s.business_days_before_due or 0 for s in policy.steps] + [0]) + 4  # business -> calendar days
    stopped = df[STOP_FLAGS].fillna(False).astype(bool).any(axis=1)
    return ~stopped & (df["days_past_due"] >= -window) & (df["effective_balance_minor"] > 0)


def features(df: pd.DataFrame, as_of: dt.date, context: pd.DataFrame | None = None) -> list[dict]:
    """What the model reads per invoice (JSON-safe). `context`: per customer touches_90d,
    last_touch_days_ago, replies_90d, last_reply (see :func:`customer_context`)."""
    today = pd.Timestamp(as_of)
    ctx = context.set_index("customer_id") if context is not None and not context.empty else None
    out = []
    for r in df.itertuples():
        c = ctx.loc[r.customer_id] if ctx is not None and r.customer_id in ctx.index else None
        renewal = (r.renewal_date - today).days if pd.notna(r.renewal_date) else None
        out.append({
            "invoice_id": str(r.invoice_id), "lane": r.lane, "days_past_due": int(r.days_past_due),
            "balance": format_minor(int(r.effective_balance_minor), r.currency), "currency": r.currency,
            "segment": r.segment, "arr": format_minor(int(r.arr_minor), "USD") if pd.notna(r.arr_minor) else None,
            "tenure_months": int(r.tenure_months) if pd.notna(r.tenure_months) else None,
            "health": r.health if isinstance(r.health, str) else None,
            "nps": int(r.nps) if pd.notna(r.nps) else None, "renewal_in_days": renewal,
            "paid_count": int(r.paid_count), "avg_days_late": float(r.avg_days_late),
            "late_count_12m": int(r.late_count_12m), "max_days_late": int(r.max_days_late),
            "chronic_late": bool(r.chronic_late), "first_time_late": bool(r.first_time_late),
            "payment_failed": bool(r.payment_failed),
            "touches_90d": int(c["touches_90d"]) if c is not None else 0,
            "last_touch_days_ago": int(c["last_touch_days_ago"]) if c is not None and pd.notna(c["last_touch_days_ago"]) else None,
            "replies_90d": int(c["replies_90d"]) if c is not None else 0,
            "last_reply": c["last_reply"] if c is not None and isinstance(c["last_reply"], str) else None,
            "p_late": round(float(r.p_late), 2) if "p_late" in df.columns and pd.notna(r.p_late) else None,
            "rules_risk_score": int(r.risk_score), "rules_tone": r.tone, "rules_escalation": r.escalation,
        })
    return out


def input_hash(feature: dict, stage_day: int, version: str, model: str, renewal_window: int | None = None) -> str:
    """The cache key: every input except the counters that move each day (days past due: the stage
    stands for them; days to renewal: whether it is inside the renewal window; days since the
    last touch: the touch count)."""
    stable = {k: v for k, v in feature.items() if k not in ("days_past_due", "last_touch_days_ago", "renewal_in_days")}
    stable["stage"] = int(stage_day)
    stable["renewal_in_window"] = renewal_window is not None and feature["renewal_in_days"] is not None and \
        0 <= feature["renewal_in_days"] <= renewal_window
    text = json.dumps([version, model, stable], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def emails_before(touches: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Customer e-mails that reached the customer (tasks.plan.DELIVERED: sent, or planned in dry-run)
    before today, with the day they went (`day`). Today's own are left out: a re-run sees the same."""
    from tasks.plan import DELIVERED

    t = touches[(touches["channel"] == "email") & touches["status"].isin(DELIVERED)].copy()
    t["day"] = pd.to_datetime(t["delivered_on"].fillna(t["as_of"]))
    return t[t["day"] < pd.Timestamp(as_of)]


def customer_context(touches: pd.DataFrame | None, replies: pd.DataFrame | None, as_of: dt.date) -> pd.DataFrame:
    """Per customer: e-mails sent (or planned) in the 90 days before today and days since the last
    one; replies in those days and the class of the last. Today's own are left out, so a re-run of
    the day asks the model nothing new."""
    today = pd.Timestamp(as_of)
    cols = ["customer_id", "touches_90d", "last_touch_days_ago", "replies_90d", "last_reply"]
    parts = []
    if touches is not None and not touches.empty:
        t = emails_before(touches, as_of)
        t = t[t["day"] > today - pd.Timedelta(days=90)]
        if not t.empty:
            g = t.drop_duplicates(["customer_id", "day"]).groupby("customer_id")["day"]
            parts.append(pd.DataFrame({"touches_90d": g.size(), "last_touch_days_ago": (today - g.max()).dt.days}))
    if replies is not None and not replies.empty:
        r = replies.copy()
        r["day"] = pd.to_datetime(r["received_on"])
        r = r[(r["day"] < today) & (r["day"] > today - pd.Timedelta(days=90)) & r["customer_id"].notna()]
        if not r.empty:
            r = r.sort_values(["day", "id"])
            g = r.groupby("customer_id")
            parts.append(pd.DataFrame({"replies_90d": g.size(), "last_reply": g["category"].last()}))
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, axis=1).rename_axis("customer_id").reset_index()
    out["touches_90d"] = out.get("touches_90d", pd.Series(0, index=out.index)).fillna(0).astype("int64")
    out["replies_90d"] = out.get("replies_90d", pd.Series(0, index=out.index)).fillna(0).astype("int64")
    for c in ("last_touch_days_ago", "last_reply"):
        if c not in out:
            out[c] = None
    return out[cols]


def check_entry(entry: ScoreEntry, rules: dict) -> str | None:
    """The guardrails on one validated entry; the reason it is rejected, or None."""
    if TONE_RANK[entry.tone] > TONE_RANK[rules["tone"]]:
        return "tone_harsher_than_rules"
    if rules["escalation"] != "none" and entry.escalation == "none":
        return "escalation_dropped"
    if entry.escalation != "none" and not entry.escalation_reason.strip():
        return "escalation_without_reason"
    return None


def model_score(scored: pd.DataFrame, policy: Policy, llm, *, as_of: dt.date, cache: pd.DataFrame | None = None,
                context: pd.DataFrame | None = None, run_id: str | None = None
                ) -> tuple[pd.DataFrame, list[dict], ScoreStats]:
    """`scored`: the rules' result (tasks.score.score). Returns the frame with the model's answers
    where they passed, the new cache rows, and the counts. `llm`: a connectors.llm.Claude."""
    from connectors.llm import LlmUnavailable

    out = scored.copy()
    version = prompt_version()
    model = llm.model_for("score")
    out["rules_risk_score"], out["rules_tone"], out["rules_escalation"] = out["risk_score"], out["tone"], out["escalation"]
    out["score_rationale"] = ""
    out["score_prompt_version"] = None
    stats = ScoreStats()
    mask = eligible(out, policy)
    todo = out[mask]
    stats.eligible = int(len(todo))
    if todo.empty:
        return out, [], stats
    feats = features(todo, as_of, context)
    stages = stage(todo["days_past_due"], policy)
    hashes = [input_hash(f, s, version, model, policy.renewal_window_days) for f, s in zip(feats, stages)]
    fresh = _fresh_cache(cache, version, model, as_of, policy.llm.rescore_after_days)

    answers: dict[str, tuple[ScoreEntry, str]] = {}  # invoice_id -> (entry, hash)
    ask = []
    for f, h in zip(feats, hashes):
        hit = fresh.get((f["invoice_id"], h))
        if hit is not None:
            answers[f["invoice_id"]] = (hit, "cache")
            stats.cached += 1
        else:
            ask.append((f, h))
    stats.asked = len(ask)
    new_rows = []
    system = system_prompt(policy)
    size = llm.settings.batch_size
    for start in range(0, len(ask), size):
        batch = ask[start:start + size]
        ids = {f["invoice_id"] for f, _ in batch}
        user = "Score these invoices (as of {}):\n{}".format(
            as_of.isoformat(), json.dumps([f for f, _ in batch], separators=(",", ":")))
        try:
            answer = llm.ask("score", version, system, user, SCORE_TOOL, items=len(batch),
                             validate=lambda raw, ids=ids: _validate(raw, ids))
        except LlmUnavailable:
            stats.fell_back("unavailable", len(batch))
            continue
        if answer is None:
            stats.fell_back("invalid_or_refused", len(batch))
            continue
        for f, h in batch:
            entry = answer[f["invoice_id"]]
            answers[f["invoice_id"]] = (entry, "call")
            new_rows.append({"invoice_id": f["invoice_id"], "input_hash": h, "prompt_version": version, "model": model,
                             "risk_score": entry.risk_score, "tone": entry.tone, "escalation": entry.escalation,
                             "escalation_reason": entry.escalation_reason, "rationale": entry.rationale,
                             "as_of": as_of, "run_id": run_id})

    rules_of = out.loc[todo.index, ["invoice_id", "tone", "escalation"]].set_index("invoice_id").to_dict("index")
    index_of = dict(zip(todo["invoice_id"], todo.index))
    for invoice_id, (entry, _) in answers.items():
        why = check_entry(entry, rules_of[invoice_id])
        if why:
            stats.fell_back(why)
            continue
        i = index_of[invoice_id]
        out.loc[i, ["risk_score", "tone", "escalation", "escalation_reason", "score_rationale"]] = [
            entry.risk_score, entry.tone, entry.escalation, entry.escalation_reason, entry.rationale]
        out.loc[i, "scorer"] = "model"
        out.loc[i, "score_prompt_version"] = version
        stats.by_model += 1
    fell = out.index.isin(todo.index) & (out["scorer"] != "model")
    out.loc[fell, "scorer"] = "rules_fallback"
    out["risk_score"] = out["risk_score"].astype("int64")
    return out, new_rows, stats


def validate_batch(answer_cls: type[BaseModel], raw: dict, ids: set[str], items: str, key: str) -> dict:
    """A batched tool answer, validated against its schema, covering exactly the ids asked about:
    {id: entry}. Raises ValueError otherwise (the caller falls back for the whole batch)."""
    try:
        answer = answer_cls.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    entries = getattr(answer, items)
    got = {getattr(e, key): e for e in entries}
    if set(got) != ids or len(entries) != len(ids):
        raise ValueError(f"the answer does not cover exactly the {items} asked about")
    return got


def _validate(raw: dict, ids: set[str]) -> dict[str, ScoreEntry]:
    return validate_batch(ScoreAnswer, raw, ids, "scores", "invoice_id")


def _fresh_cache(cache: pd.DataFrame | None, version: str, model: str, as_of: dt.date,
                 max_age: int) -> dict[tuple[str, str], ScoreEntry]:
    if cache is None or cache.empty:
        return {}
    c = cache[(cache["prompt_version"] == version) & (cache["model"] == model)]
    c = c[pd.to_datetime(c["as_of"]) > pd.Timestamp(as_of) - pd.Timedelta(days=max_age)]
    c = c.sort_values("id").drop_duplicates(["invoice_id", "input_hash"], keep="last")
    return {(r.invoice_id, r.input_hash): ScoreEntry(invoice_id=r.invoice_id, risk_score=int(r.risk_score), tone=r.tone,
                                                      escalation=r.escalation, escalation_reason=r.escalation_reason,
                                                      rationale=r.rationale)
            for r in c.itertuples()}
