"""The layers of docs/architecture.md hold: `lint-imports` checks the contracts in pyproject.toml
(connectors and the ledger never import the hops or the flows, the hops never import Prefect or the
flows, the shared ground imports nothing above it, no cycles inside a layer), imports inside
functions included."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
