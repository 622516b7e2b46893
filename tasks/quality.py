"""Data quality on every hop: one Great Expectations suite per hop, in ``expectations/<hop>.json``.

Each expectation carries ``meta.reason`` (the quarantine reason for a row it rejects) and
``meta.severity``: ``quarantine`` rejects the rows, ``fail`` stops the run if any row fails, ``warn``
only reports. A row's reason is that of the first expectation in suite order that rejects it; the
others are kept in its detail. A hop whose quarantined share passes the policy's threshold fails the
run with :class:`DataQualityError`.
"""

from __future__ import annotations

import datetime as dt

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

from arflow.config import EXPECTATIONS_DIR

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
logging.getLogger("great_expectations").setLevel(logging.WARNING)


class DataQualityError(RuntimeError):
    """A hop's data is too broken to go on: the message names the hop, the share and the reasons."""


@dataclass
class CheckResult:
    hop: str
    rows: int
    rejected: pd.DataFrame  # index = rejected rows of the checked frame; columns reason, detail
    expectations: list[dict] = field(default_factory=list)  # one summary per expectation

    @property
    def failure_share(self) -> float:
        return len(self.rejected) / self.rows if self.rows else 0.0

    @property
    def passed(self) -> bool:
        return self.rejected.empty and all(e["success"] or e["severity"] == "warn" for e in self.expectations)


@lru_cache(maxsize=None)
def load_suite_dict(hop: str) -> dict:
    path = EXPECTATIONS_DIR / f"{hop}.json"
    with open(path) as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def _batch_definition():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = ctx.data_sources.add_pandas("arflow").add_dataframe_asset("hop")
    return asset.add_batch_definition_whole_dataframe("whole")


_SUITES_ON = [True]


@contextmanager
def suites_off():
    """Inside this block run_suite rejects nothing and checks nothing. Only for the simulator,
    whose generated records are well-formed by construction and which spot-checks them with the
    suites on (a suite costs about 0.3 s whatever its size: 250 simulated days x 7 suites)."""
    _SUITES_ON.append(False)
    try:
        yield
    finally:
        _SUITES_ON.pop()


def run_suite(df: pd.DataFrame, hop: str) -> CheckResult:
    """Validate `df` against the hop's suite; return the rejected rows with their reasons."""
    import great_expectations as gx

    if not _SUITES_ON[-1]:
        return CheckResult(hop=hop, rows=len(df), rejected=pd.DataFrame(columns=["reason", "detail"], index=df.index[:0]))
    spec = load_suite_dict(hop)
    frame = df.reset_index(drop=True)
    summaries: list[dict] = []
    reasons: dict[int, list[tuple[int, str, str]]] = {}
    if not frame.empty:
        exps = [{**e, "meta": {**e.get("meta", {}), "position": n}} for n, e in enumerate(spec["expectations"])]
        suite = gx.ExpectationSuite(name=spec["name"], expectations=exps)
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format={"result_format": "COMPLETE", "include_unexpected_rows": False})
        for res in result.results:
            cfg = res.expectation_config
            meta = cfg.meta or {}
            severity = meta.get("severity", "quarantine")
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise DataQualityError(f"{hop}: expectation {cfg.type} on {cfg.kwargs.get('column')} could not run: "
                                       f"{res.exception_info.get('exception_message')}")
            idx = list(res.result.get("unexpected_index_list") or [])
            summaries.append({"hop": hop, "expectation": cfg.type, "column": cfg.kwargs.get("column")
                              or f"{cfg.kwargs.get('column_A')},{cfg.kwargs.get('column_B')}",
                              "reason": meta.get("reason"), "severity": severity, "success": bool(res.success),
                              "unexpected_count": len(idx)})
            if severity == "fail" and idx:
                raise DataQualityError(f"{hop}: {len(idx)} row(s) fail {cfg.type} "
                                       f"({meta.get('detail', meta.get('reason'))}); the run stops")
            if severity != "quarantine":
                continue
            for i in idx:
                reasons.setdefault(int(i), []).append(
                    (int(meta["position"]), meta["reason"], meta.get("detail", cfg.type)))
    # A row's reason is that of the first expectation in suite order that rejects it.
    rows = {}
    for i, found in sorted(reasons.items()):
        found.sort()
        rows[i] = {"reason": found[0][1], "detail": "; ".join(d for _, _, d in found)}
    rejected = pd.DataFrame.from_dict(rows, orient="index", columns=["reason", "detail"])
    rejected.index = df.index[list(rows.keys())] if rows else df.index[:0]
    return CheckResult(hop=hop, rows=len(frame), rejected=rejected, expectations=summaries)


def enforce_threshold(check: CheckResult, max_share: float) -> None:
    if check.rows and check.failure_share > max_share:
        counts = check.rejected["reason"].value_counts().to_dict()
        raise DataQualityError(
            f"{check.hop}: {len(check.rejected)} of {check.rows} rows ({check.failure_share:.1%}) failed data quality, "
            f"above the {max_share:.1%} threshold; reasons {counts}")


def open_invoice_volume(today: int, previous: tuple[dt.date, int] | None, max_drop: float) -> tuple[str | None, str | None]:
    """(note, failure) for the number of open invoices a daily run read against the last completed
    daily run's (its day and count). No invoice at all is always a note; a drop of more than
    `max_drop` of the previous count is a failure (a truncated or partial export)."""
    note = None
    if today == 0:
        note = ("The billing source returned no open invoices at all: if that is not expected, the export may "
                "be truncated (an invoices.csv with its header only).")
    if previous is None or previous[1] == 0:
        return note, None
    day, before = previous
    drop = (before - today) / before
    if drop > max_drop:
        return note, (f"extract_aging: open invoices fell from {before} ({day}) to {today} ({drop:.0%} fewer), above "
                      f"the {max_drop:.0%} day-over-day threshold (data_quality.max_open_invoice_drop): a truncated "
                      "export? Check the source, or raise the threshold if the drop is real")
    return note, None
