"""The `arflow` command: the way in for people and scripts. It starts the same flows the
deployments run. With --json, stdout carries exactly one JSON object; everything else goes to stderr.
Exit codes: 0 done, 1 the run could not complete (unreadable source, bad policy, data quality),
2 bad arguments."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="arflow: invoice and AR follow-up automation on Prefect.")

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    pass


def _parse_date(text: str | None, option: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be a date as YYYY-MM-DD, got {text!r}") from None


def _quiet_env() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@app.command()
def run(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day to run, YYYY-MM-DD (default: today in the company's timezone)"),
    source: str = typer.Option("demo", "--source", help="demo | csv:DIR"),
    mode: str = typer.Option("dry-run", "--mode", help="dry-run (render and record, send nothing)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Run the daily AR flow for one day."""
    day = _parse_date(as_of, "--as-of")
    _check_source(source)
    _quiet_env()
    with contextlib.redirect_stdout(sys.stderr):
        from flows.daily_ar import daily_ar

        summary = daily_ar(as_of=day, source=source, mode=mode)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        from tasks.report import markdown

        sys.stdout.write(markdown(summary))


@app.command()
def checkpoint(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="the day to run, YYYY-MM-DD (default: today)"),
    source: str = typer.Option("demo", "--source", help="demo | csv:DIR (its payments.csv)"),
    bank_file: Optional[Path] = typer.Option(None, "--bank-file", help="a bank statement: CSV or BAI2"),
    mode: str = typer.Option("dry-run", "--mode", help="dry-run (receipts recorded, not sent)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Run the payment checkpoint: apply payments, close paid invoices, queue receipts."""
    day = _parse_date(as_of, "--as-of")
    _check_source(source)
    if bank_file is not None and not bank_file.is_file():
        raise UsageError(f"--bank-file {bank_file} is not a file")
    _quiet_env()
    with contextlib.redirect_stdout(sys.stderr):
        from flows.payment_checkpoint import payment_checkpoint

        summary = payment_checkpoint(as_of=day, source=source, bank_file=str(bank_file) if bank_file else None,
                                     mode=mode)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        for k, v in summary.items():
            sys.stdout.write(f"{k}: {v}\n")


def _check_source(source: str) -> None:
    if not (source == "demo" or source.startswith("csv:")):
        raise UsageError(f"--source must be demo or csv:DIR, got {source!r}")
    if source.startswith("csv:") and not Path(source[4:]).is_dir():
        raise UsageError(f"--source {source}: {source[4:]} is not a folder")


@app.command("seed-demo")
def seed_demo(
    as_of: Optional[str] = typer.Option(None, "--as-of", help="anchor date of the demo portfolio (default: today)"),
    seed: int = typer.Option(42, "--seed", help="random seed; the same seed and date give the same data"),
    folder: Optional[Path] = typer.Option(None, "--out", help="folder to write (default: DATA_DIR/demo)"),
) -> None:
    """Generate the demo data (CSV source + ledger records) and seed the ledger."""
    from arflow import demo
    from arflow.config import Settings, today_in
    from arflow.policy import load_policy
    from connectors.ledger.store import Ledger

    settings = Settings.from_env()
    policy = load_policy(settings.policy_path)
    anchor = _parse_date(as_of, "--as-of") or today_in(settings.timezone or policy.timezone)
    out = folder or settings.data_dir / "demo"
    demo.generate(out, anchor=anchor, seed=seed)
    demo.seed_ledger(Ledger(settings.db_url), out)
    info = json.loads((out / "demo.json").read_text())
    typer.echo(f"demo data: {info['customers']} customers, {info['invoices']} invoices, anchored {anchor} -> {out}",
               err=True)


def main() -> None:
    """Console entry point with one-line errors."""
    from arflow.policy import PolicyError
    from connectors.ledger.store import LedgerError
    from connectors.sources import SourceError
    from tasks.quality import DataQualityError

    try:
        app(standalone_mode=False)
    except UsageError as exc:
        print(f"arflow: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except (SourceError, PolicyError, LedgerError, DataQualityError) as exc:
        print(f"arflow: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # usage errors of the CLI library, and anything unexpected
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's (or typer's copy of) errors
            print(f"arflow: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        print(f"arflow: error: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
