"""The `arflow` command run in this process, as a user's shell would run it in its own.

`arflow(args, env)` calls the console entry point (`arflow.cli.main`: the same argument parsing,
one-line errors and exit codes) inside click's `CliRunner` isolation: stdout and stderr captured
apart, the given environment set for the call and put back after it. The result is a
`subprocess.CompletedProcess`, so a test reads `returncode`, `stdout` and `stderr` as it would of a
real process. A process costs seconds of imports (and, without a Prefect server to talk to, a
temporary server of its own); in this process the imports are paid once and the flows report to
the session's test server. What only a real process shows (the import time of `--help`, a signal,
a console script on PATH) stays in the subprocess tests of tests/e2e and a few others.

`env` is what the shell would export on top of the test's environment; a value of None unsets the
variable for the call. PREFECT_API_URL in it is applied to Prefect's settings (Prefect reads its
environment once, at import); an empty value means "whatever server this process has".
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Mapping, Sequence

from click.testing import CliRunner


def arflow(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from arflow import cli

    env = dict(env or {})
    api_url = env.pop("PREFECT_API_URL", None)
    if not (api_url or PREFECT_API_URL.value()):  # else Prefect starts a server inside pytest, stopped at exit
        raise RuntimeError("tests.cli.arflow needs a Prefect API: use the prefect_server fixture (tests/conftest.py)")
    argv = ["arflow", *map(str, args)]
    runner = CliRunner()
    code = 0
    api = temporary_settings(updates={PREFECT_API_URL: api_url}) if api_url else contextlib.nullcontext()
    with runner.isolation(env=env) as (out, err, _), api:
        saved_argv, sys.argv = sys.argv, argv
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                sys.stderr.write(f"{exc.code}\n")
        finally:
            sys.argv = saved_argv
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def env_delta(full: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """What a helper that built a whole environment ({**os.environ, ...}) changes: the set and the
    changed variables, and None for each one it left out."""
    import os

    base = os.environ if base is None else base
    delta: dict[str, str | None] = {k: v for k, v in full.items() if base.get(k) != v}
    delta.update({k: None for k in base if k not in full})
    return delta


def in_folder(args: Sequence[str], folder, **env: str) -> subprocess.CompletedProcess:
    """`arflow(args)` with `folder` as the project's data folder and a SQLite ledger in it."""
    return arflow(args, {"ARFLOW_DATA_DIR": str(folder), "ARFLOW_DB_URL": f"sqlite:///{folder}/l.db", **env})
