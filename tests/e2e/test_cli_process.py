"""The console script in a real process, as a shell or a scheduler starts it: the one JSON object on
stdout, the exit codes and the one-line errors (the rest of the CLI's tests run it in-process,
tests/cli.py, which shares this process's imports and Prefect server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import customer, invoice, make_source

ARFLOW = str(Path(sys.executable).parent / "arflow")


def _process(args, tmp_path, **env):
    from prefect.settings import PREFECT_API_URL

    full = {**os.environ, "ARFLOW_DATA_DIR": str(tmp_path), "ARFLOW_DB_URL": f"sqlite:///{tmp_path / 'l.db'}",
            "PREFECT_API_URL": PREFECT_API_URL.value() or "", **env}
    return subprocess.run([ARFLOW, *args], capture_output=True, text=True, env=full, timeout=300)


@pytest.mark.usefixtures("prefect_server")
def test_a_run_in_its_own_process_prints_one_json_object_and_exits_0(tmp_path):
    src = make_source(tmp_path / "src", [invoice("I1", due_date="2026-11-18"), invoice("I2", cid="C2")],
                      [customer("C1"), customer("C2")] + [customer(f"K{i}") for i in range(20)])
    p = _process(["run", "--as-of", "2026-11-23", "--source", f"csv:{src}", "--json"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)  # the whole of stdout is the one object: the logs went to stderr
    assert out["as_of"] == "2026-11-23" and out["open_invoices"] == 2
    assert sum(out["outcomes"].values()) == 2


def test_a_bad_argument_is_one_line_and_exit_2_before_anything_runs(tmp_path):
    p = _process(["run", "--as-of", "23/11/2026"], tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == ["arflow: error: --as-of must be a date as YYYY-MM-DD, got '23/11/2026'"]
    assert not (tmp_path / "l.db").exists()


def test_help_lists_the_commands():
    p = subprocess.run([ARFLOW, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert all(cmd in p.stdout for cmd in ("run", "checkpoint", "simulate", "db"))
