"""The KPI dashboard: an HTML page per day with the DSO trend, aging by amount, recovery and
days-to-pay per tier, the escalation rate, the 13-week forecast and the decision queue with its
context. It needs no network: its one script, plotly.js, is a file beside the pages
(`plotly-<version>.min.js`, written once per folder and shared by every day's page), so a page is
about 100 KB, not 5 MB."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, select_autoescape
from plotly.offline import get_plotlyjs

from arflow.money import format_amount, minor_digits
from arflow.policy import Kpis
from arflow.resources import TEMPLATES_DIR
from tasks.extract import BUCKET_LABELS, BUCKETS
from tasks.kpis import TIERS

TEMPLATES = TEMPLATES_DIR
CHARTS = ("dso_trend", "aging_amount", "recovery_by_tier", "days_to_pay_by_tier", "escalation_rate", "forecast")


def _major(minor: int, currency: str) -> float:
    """For a chart's axis only: amounts are computed in minor units and shown as text elsewhere."""
    return float(Decimal(int(minor)).scaleb(-minor_digits(currency)))


def _layout(fig: go.Figure, title: str, y: str) -> go.Figure:
    fig.update_layout(title=title, yaxis_title=y, height=360, margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h"), template="plotly_white")
    return fig


def _one_currency_at_a_time(fig: go.Figure, currencies: list[str], shown: str) -> go.Figure:
    """Amounts of different currencies do not share an axis: one currency shows, a menu switches."""
    for tr in fig.data:
        tr.visible = tr.name == shown
    if len(currencies) > 1:
        fig.update_layout(updatemenus=[dict(type="dropdown", x=1.0, xanchor="right", y=1.18, buttons=[
            dict(label=c, method="update", args=[{"visible": [tr.name == c for tr in fig.data]}])
            for c in currencies], active=currencies.index(shown))])
    return fig


def figures(kpis: dict, snapshots: pd.DataFrame, reporting_currency: str = "USD") -> dict[str, go.Figure]:
    cur = kpis["currencies"]
    figs: dict[str, go.Figure] = {}
    trend = go.Figure()
    esc = go.Figure()
    if not snapshots.empty:
        s = snapshots.sort_values("as_of")
        for c, g in s.groupby("currency"):
            days = [str(d) for d in g["as_of"]]
            trend.add_trace(go.Scatter(x=days, y=g["dso_countback"].tolist(), mode="lines+markers",
                                       name=f"{c} countback"))
            trend.add_trace(go.Scatter(x=days, y=g["best_possible_dso"].tolist(), mode="lines", name=f"{c} best possible",
                                       line=dict(dash="dot")))
        first = s.drop_duplicates("as_of")
        rates = [json.loads(k).get("escalation_rate") for k in first["kpis"]]
        esc.add_trace(go.Scatter(x=[str(d) for d in first["as_of"]], y=[r * 100 if r is not None else None
                                                                        for r in rates],
                                 mode="lines+markers", name="escalation rate"))
    span = (pd.to_datetime(snapshots["as_of"]).max() - pd.to_datetime(snapshots["as_of"]).min()).days \
        if not snapshots.empty else 0
    for f in (trend, esc):
        # Whole days: a short series got ticks between days, each labelled with the same date.
        f.update_xaxes(type="date", tickformat="%Y-%m-%d", **({"dtick": 86400000} if span <= 14 else {}))
    figs["dso_trend"] = _layout(trend, "DSO trend (countback) and best possible DSO", "days")
    figs["escalation_rate"] = _layout(esc, "Escalation rate (share of touched overdue invoices)", "%")
    aging = go.Figure()
    for c, k in cur.items():
        aging.add_trace(go.Bar(x=[BUCKET_LABELS[b] for b in BUCKETS], y=[_major(k["aging"][b]["minor"], c) for b in BUCKETS], name=c))
    currencies = list(cur)
    shown = reporting_currency if reporting_currency in cur else (currencies[0] if currencies else "")
    figs["aging_amount"] = _one_currency_at_a_time(_layout(aging, "Aging buckets by amount", "amount"), currencies, shown)
    rec = go.Figure()
    dtp = go.Figure()
    for c, k in cur.items():
        rec.add_trace(go.Bar(x=list(TIERS), y=[(k["recovery_rate_by_tier"][t]["rate"] or 0) * 100 for t in TIERS], name=c))
        dtp.add_trace(go.Bar(x=list(TIERS), y=[k["days_to_pay_by_tier"][t]["days_to_pay"] for t in TIERS], name=c))
    figs["recovery_by_tier"] = _layout(rec.update_layout(barmode="group"), "Recovery rate per tier (365 days)", "%")
    figs["days_to_pay_by_tier"] = _layout(dtp.update_layout(barmode="group"), "Average days to pay per tier", "days")
    fc = go.Figure()
    for c, f in kpis["forecast"]["currencies"].items():
        fc.add_trace(go.Bar(x=[f"W{w['week']} {w['start'][5:]}" for w in f["by_week"]],
                            y=[_major(w["minor"], c) for w in f["by_week"]], name=c))
    figs["forecast"] = _one_currency_at_a_time(
        _layout(fc, f"Cash forecast, next {kpis['forecast']['weeks']} weeks", "expected"),
        list(kpis["forecast"]["currencies"]), shown)
    return figs


def decision_queue(decisions: pd.DataFrame) -> list[dict]:
    out = []
    if decisions.empty:
        return out
    for d in decisions[decisions["status"] == "open"].sort_values("id").itertuples():
        c = json.loads(d.context or "{}")
        inv = c.get("invoices") or []
        out.append({"id": d.id, "opened_on": d.opened_on, "kind": d.kind, "customer": c.get("customer", d.customer_id),
                    "segment": c.get("segment", ""), "health": c.get("health", ""),
                    "invoices": ", ".join(f"{i.get('invoice_number')} {i.get('amount')} {i.get('currency')}" for i in inv)
                    or d.invoice_ids,
                    "days_late": max((int(i.get("days_past_due") or 0) for i in inv), default=""),
                    "risk": c.get("risk_score", ""), "reason": c.get("escalation_reason") or "",
                    "subject": c.get("proposed_subject") or ""})
    return out


def render(kpis: dict, snapshots: pd.DataFrame, decisions: pd.DataFrame, cfg: Kpis, title: str,
           reporting_currency: str = "USD", customers: list[dict] | None = None) -> str:
    """`customers`: the open decisions by customer, ranked (tasks.decisions.customer_queue)."""
    figs = figures(kpis, snapshots, reporting_currency)
    charts = [{"name": n, "html": figs[n].to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{n}")}
              for n in CHARTS]
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["money"] = format_amount
    return env.get_template("dashboard.html.j2").render(
        title=title, kpis=kpis, ops=kpis["operating"], kpis_cfg=cfg, charts=charts,
        decisions=decision_queue(decisions), plotly_src=plotly_file_name(), buckets=BUCKET_LABELS,
        customers=customers or [])


def plotly_file_name() -> str:
    import plotly

    return f"plotly-{plotly.__version__}.min.js"


def write_plotly(folder: Path) -> Path:
    """plotly.js beside the pages (once per version; a page names the version it was drawn with)."""
    path = Path(folder) / plotly_file_name()
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        tmp.replace(path)
    return path


def write(path: Path, kpis: dict, snapshots: pd.DataFrame, decisions: pd.DataFrame, cfg: Kpis,
          title: str | None = None, reporting_currency: str = "USD", customers: list[dict] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_plotly(path.parent)
    html = render(kpis, snapshots, decisions, cfg, title or f"arflow: accounts receivable, {kpis['as_of']}",
                  reporting_currency, customers)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
