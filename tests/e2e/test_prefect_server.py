"""End to end, as a deployment runs: a real Prefect server (`prefect server start` on a loopback
port), `prefect --no-prompt deploy --all` from the project's prefect.yaml, a process worker, the
daily deployment triggered for a fixed as_of on the demo data, its artifacts read back through
the client; then a run made to fail raises the failure event, and the automation that
`arflow setup-alerts` created notifies through a webhook block to a local HTTP server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from werkzeug import Response

from arflow.config import ROOT

AS_OF = "2026-11-23"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prefect server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("prefect server did not become healthy")


@pytest.fixture
def stack(tmp_path):
    """The server, its settings for subprocesses, and a worker started later by the test."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false", "DO_NOT_TRACK": "1",
           "GX_ANALYTICS_ENABLED": "false", "ARFLOW_DATA_DIR": str(tmp_path / "data"),
           "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}", "PREFECT_LOGGING_LEVEL": "WARNING"}
    for k in ("ARFLOW_SLACK_WEBHOOK_URL", "ARFLOW_SMTP_HOST"):
        env.pop(k, None)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name, *args):
        p = subprocess.Popen([str(BIN / "prefect"), *args], cwd=ROOT, env=env, start_new_session=True,
                             stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    server = start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
    wait_healthy(api, server)
    yield {"api": api, "env": env, "start": start, "logs": logs}
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(p.pid, signal.SIGKILL)


def cli(stack, *args, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), cwd=ROOT, env=stack["env"], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]} {done.stderr[-1500:]}"
    return done


def test_deploy_run_artifacts_and_failure_alert(stack, httpserver):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, FlowRunFilterId, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    alerts = []
    httpserver.expect_request("/alerts", method="POST").respond_with_handler(
        lambda req: alerts.append(req.get_json()) or Response("ok"))
    prefect = str(BIN / "prefect")
    cli(stack, prefect, "work-pool", "create", "arflow-local", "--type", "process")
    cli(stack, prefect, "--no-prompt", "deploy", "--all")
    with temporary_settings({PREFECT_API_URL: stack["api"]}):
        CustomWebhookNotificationBlock(name="arflow-test", url=httpserver.url_for("/alerts"),
                                       json_data={"text": "{{subject}} | {{body}}"}).save("arflow-alerts")
    cli(stack, str(BIN / "arflow"), "setup-alerts", "--block", "custom-webhook/arflow-alerts")
    stack["start"]("worker", "worker", "start", "--pool", "arflow-local", "--type", "process")

    with temporary_settings({PREFECT_API_URL: stack["api"]}):
        async def deployments():
            async with get_client() as client:
                return {d.name for d in await client.read_deployments()}
        assert {"daily-ar", "payment-checkpoint", "review-decision", "collections-brief", "backfill"} <= \
            asyncio.run(deployments())

        run = run_deployment("daily_ar/daily-ar", parameters={"as_of": AS_OF, "source": "demo", "mode": "dry-run"},
                             timeout=600)
        assert run.state.is_completed(), (run.state, (stack["logs"] / "worker.log").read_text()[-3000:])

        async def read_artifacts(flow_run_id):
            async with get_client() as client:
                return await client.read_artifacts(
                    artifact_filter=ArtifactFilter(), flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=50)
        arts = {a.key: a for a in asyncio.run(read_artifacts(run.id))}
        assert {"daily-ar-summary", "daily-ar-report", "ar-kpis-table", "ar-kpis-report", "ar-kpis-page"} <= set(arts)
        assert f"# Daily AR run {AS_OF}" in arts["daily-ar-report"].data
        assert (Path(stack["env"]["ARFLOW_DATA_DIR"]) / "reports" / "dashboard.html").is_file()

        failed = run_deployment("daily_ar/daily-ar", parameters={"as_of": AS_OF, "mode": "no-such-mode"}, timeout=600)
        assert failed.state.is_failed()
    deadline = time.monotonic() + 120
    while not alerts and time.monotonic() < deadline:
        time.sleep(1)
    assert alerts, (stack["logs"] / "server.log").read_text()[-3000:]
    assert "daily_ar" in alerts[0]["text"] and "Failed" in alerts[0]["text"]
    assert len(alerts) == 1  # the successful run raised nothing
    print(f"end-to-end test took {time.monotonic() - started:.0f} s")
