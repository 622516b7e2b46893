"""The dashboard page opened in headless Chromium (Debian's package, `make browser`): every chart
rendered by plotly.js from the page alone, with the data of two daily runs of the demo."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import subprocess

import pytest

from arflow.money import format_amount

from flows.daily_ar import daily_ar
from flows.reporting import collections_brief
from tasks.dashboard import CHARTS, plotly_file_name
from tests.cli import arflow

from .conftest import ANCHOR


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("ARFLOW_SKIP_BROWSER") == "1":
            pytest.skip("ARFLOW_SKIP_BROWSER=1 and no chromium")
        pytest.fail("chromium is not installed: run `make browser` (Debian's chromium package)")
    return path


def rendered_dom(page, tmp_path) -> str:
    out = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000", "--dump-dom",
         page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def chart_sections(dom: str) -> dict[str, str]:
    parts = re.split(r'(?=<div[^>]*id="chart-)', dom)
    found = {}
    for p in parts:
        m = re.match(r'<div[^>]*id="chart-([a-z_]+)"', p)
        if m:
            found[m.group(1)] = p
    return found


def test_report_html_renders_every_chart_in_headless_chromium(data_dir, tmp_path):
    daily_ar(as_of=ANCHOR, source="demo")
    daily_ar(as_of=ANCHOR + dt.timedelta(days=1), source="demo")
    page = tmp_path / "dash.html"
    done = arflow(["report", "--as-of", str(ANCHOR + dt.timedelta(days=1)), "--html", str(page), "--json"])
    assert done.returncode == 0, done.stderr[-2000:]
    kpis = json.loads(done.stdout)
    assert kpis["currencies"]["USD"]["dso_countback"] is not None
    html = page.read_text()
    # Nothing is fetched from the network: the one script is plotly.js beside the page, on disk, shared by
    # every day's page (so a page is small), and no stylesheet is linked.
    scripts = [t for t in re.findall(r"<script[^>]*>", html) if "src=" in t]
    assert scripts == [f'<script src="{plotly_file_name()}">']
    assert (page.parent / plotly_file_name()).is_file()
    assert not re.search(r"<link[^>]+href=", html)
    assert len(html.encode()) < 500_000, len(html.encode())
    dom = rendered_dom(page, tmp_path)
    charts = chart_sections(dom)
    assert set(charts) == set(CHARTS)
    for name, section in charts.items():
        # plotly.js marks a div it drew into and adds the SVG with one group per trace.
        assert "js-plotly-plot" in section[:400], name
        assert 'class="main-svg"' in section, name
        assert re.search(r'class="trace (bars|scatter)[" ]', section), f"{name}: no trace drawn"
    # The DSO trend has a point for each of the two days' snapshots.
    trend = charts["dso_trend"]
    assert len(re.findall(r'class="point"', trend)) >= 2
    # The numbers on the page are the ledger's.
    assert format_amount(kpis["currencies"]["USD"]["ar"]["amount"], "USD") in dom


def artifacts(flow_run_id: str) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(),
                                               flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                               task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=50)
    return {a.key: a for a in asyncio.run(read())}


def test_daily_run_and_collections_brief_publish_kpi_artifacts_and_pages(data_dir):
    s = daily_ar(as_of=ANCHOR, source="demo")
    daily = artifacts(s["run_id"])
    assert {"ar-kpis-table", "ar-kpis-report", "ar-kpis-page"} <= set(daily)
    assert (data_dir / "reports" / "dashboard.html").is_file()
    assert s["kpis"]["USD"]["dso_countback"] is not None
    out = collections_brief(as_of=ANCHOR)
    page = data_dir / "reports" / f"brief-{ANCHOR.isoformat()}.html"
    assert page.is_file() and out["page"] == str(page)
    brief = artifacts(out["flow_run_id"])
    assert {"collections-brief-table", "collections-brief-report", "collections-brief-page"} <= set(brief)
    report = brief["collections-brief-report"].data
    usd = out["kpis"]["currencies"]["USD"]
    assert f"| USD | {format_amount(usd['ar']['amount'], 'USD')} |" in report and "Cash forecast" in report
    assert page.resolve().as_uri() in str(brief["collections-brief-page"].data)
    # The brief reads the daily run's snapshot: the same DSO.
    assert usd["dso_countback"] == s["kpis"]["USD"]["dso_countback"]


MEASURE = """<script>
window.addEventListener("load", function () { setTimeout(function () {
  var out = [];
  document.querySelectorAll(".chart").forEach(function (c) {
    var svg = c.querySelector("svg.main-svg");
    out.push({chart: c.getAttribute("data-chart"), cell: c.getBoundingClientRect().width,
              svg: svg ? svg.getBoundingClientRect().width : null});
  });
  var pre = document.createElement("pre"); pre.id = "measure";
  pre.textContent = JSON.stringify({viewport: window.innerWidth, charts: out});
  document.body.appendChild(pre);
}, 2000); });
</script>"""


def test_every_chart_is_drawn_within_its_cell(data_dir, tmp_path):
    """The DSO trend was drawn 1,552 px wide in a 768 px cell: today's point and half its legend hidden.
    Each chart's drawing, measured in Chromium at several window widths, fits the cell it sits in."""
    daily_ar(as_of=ANCHOR, source="demo")
    daily_ar(as_of=ANCHOR + dt.timedelta(days=1), source="demo")
    page = data_dir / "reports" / f"dashboard-{(ANCHOR + dt.timedelta(days=1)).isoformat()}.html"
    assert page.is_file() and (data_dir / "reports" / "dashboard.html").read_text() == page.read_text()
    probe = page.with_name("probe.html")  # the page as written, with a measuring script at its end
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    for width in (1600, 1000, 700):
        _charts_fit(probe, tmp_path, width)


def _charts_fit(probe, tmp_path, width: int) -> None:
    out = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / f'chromium-{width}'}", f"--window-size={width},1000",
         "--virtual-time-budget=15000", "--dump-dom", probe.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="measure">([^<]*)</pre>', out.stdout)
    assert found, out.stderr[-2000:]
    measured = json.loads(found.group(1).replace("&quot;", '"'))
    assert {c["chart"] for c in measured["charts"]} == set(CHARTS)
    for c in measured["charts"]:
        assert c["svg"] is not None and 200 < c["svg"] <= c["cell"] + 1, (width, c)
        assert c["cell"] <= measured["viewport"], (width, c)
