"""What leaves the process, made safe: secrets out of messages, one-line errors, and CSV cells a
spreadsheet will not evaluate.

Every message that leaves arflow (the CLI's error line, ledger errors, the run record's error,
failure alerts, Prefect's state messages and logs, artifacts) passes through :func:`redact`.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# user:password@ in anything URL-shaped (scheme://user:password@host).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:]*):([^\s/?#@]*)@")
# Credential parameters in a query string or a libpq conninfo string ("host=x password=y").
_SECRET_NAMES = (r"password|passwd|pwd|sslpassword|sslkey_password|passphrase|token|access_token|refresh_token"
                 r"|id_token|auth_token|api_key|apikey|api-key|key|secret|client_secret|secret_key|private_key"
                 r"|session_id|sessionid|signature|sig|credential|credentials|auth")
_PARAM = re.compile(rf"(?i)((?:^|[?&;\s,(\"'])(?:{_SECRET_NAMES})\s*=\s*)('[^']*'|\"[^\"]*\"|[^&\s;,)\"']*?(?=:?(?:[&\s;,)\"']|$)))")
# OAuth bearer tokens (an Authorization header, XOAUTH2's "auth=Bearer <token>") and the base64
# XOAUTH2 initial response smtplib sends ("AUTH XOAUTH2 dXNlcj1..."), which carries the token.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{12,}=*")
_XOAUTH2 = re.compile(r"(?i)\b(XOAUTH2\s+)[A-Za-z0-9+/]{8,}=*")
_SQLA_NOISE = re.compile(r"\[SQL: .*|\[parameters: .*|\(Background on this error at: [^)]*\)", re.S)


def redact(text: object) -> str:
    """`text` with every password or credential a URL or a connection string can carry masked:
    ``postgresql://u:pw@h/db`` -> ``postgresql://u:***@h/db``; ``?password=pw&sslmode=require`` ->
    ``?password=***&sslmode=require``; ``host=h password=pw`` -> ``host=h password=***``; ``Bearer eyJ...``
    -> ``Bearer ***``; ``AUTH XOAUTH2 dXNlcj...`` -> ``AUTH XOAUTH2 ***``."""
    text = "" if text is None else str(text)
    text = _USERINFO.sub(lambda m: f"{m[1]}:{MASK}@", text)
    text = _XOAUTH2.sub(lambda m: m[1] + MASK, _BEARER.sub(lambda m: m[1] + MASK, text))
    return _PARAM.sub(lambda m: m[1] + MASK if m[2] else m[0], text)


def error_line(exc: BaseException | str, limit: int = 500) -> str:
    """An error as one redacted line: a database error's driver message without SQLAlchemy's
    ``[SQL: ...]``, ``[parameters: ...]`` and ``(Background on this error ...)`` lines; the lines
    of a many-line message (a YAML parser's) joined with "; "."""
    if isinstance(exc, str):
        text = exc
    else:
        orig = getattr(exc, "orig", None)
        text = f"{orig.__class__.__name__}: {orig}" if isinstance(orig, BaseException) else str(exc)
        text = text or exc.__class__.__name__
    text = _SQLA_NOISE.sub("", text)
    line = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    return redact(line if len(line) <= limit else line[:limit - 3] + "...")


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message and its traceback in place (on a handler,
    it covers every logger whose records the handler takes: Prefect's API and console handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left as it is
            return True
        if record.exc_info and record.exc_info[0] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        elif record.exc_text:
            message += "\n" + record.exc_text
            record.exc_text = None
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Put the redacting filter on every handler of the root logger and of Prefect's and arflow's
    loggers (idempotent)."""
    names = [None, "prefect", "prefect.flow_runs", "prefect.task_runs", "prefect.engine", "arflow", "arflow.alerts",
             *[n for n in logging.root.manager.loggerDict if n.startswith(("prefect", "arflow"))]]
    for name in names:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")  # a plain negative amount is a number, not a formula


def csv_cell(value: object) -> object:
    """A cell for a CSV people open in a spreadsheet: text that a spreadsheet would evaluate as a
    formula (starting with = + - @, a tab or a line break; a plain number like -12.50 aside) gets a leading apostrophe (OWASP's
    advice for CSV injection). Numbers and empty cells pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_safe(frame):
    """A DataFrame with every text cell through :func:`csv_cell` (numbers left as numbers)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(csv_cell)
    return out


def scrub(exc: BaseException) -> BaseException:
    """`exc` with any credential in its message masked: the same exception where its message can
    be replaced, else a RuntimeError naming its class (for Prefect's state message and logs)."""
    text = str(exc)
    clean = redact(text)
    if clean == text:
        return exc
    try:
        exc.args = (clean,)
        if str(exc) == clean:
            return exc
    except Exception:  # noqa: BLE001 - an exception whose args cannot be set
        pass
    return RuntimeError(f"{exc.__class__.__name__}: {clean}")


def _as_ledger_error(exc: BaseException) -> BaseException | None:
    """A database error leaving a flow, as the ledger's own error with one clean line (no SQL, no
    parameters, no "Background on this error"). Looked up in sys.modules: the ledger sits above
    this module, and an error of a module never imported was never raised."""
    import sys

    sqla, store = sys.modules.get("sqlalchemy.exc"), sys.modules.get("connectors.ledger.store")
    if sqla is None or store is None or not isinstance(exc, sqla.SQLAlchemyError):
        return None
    return store.LedgerError(f"the ledger refused: {error_line(exc)}")


def redacted_errors(fn):
    """Decorator (under ``@flow``): an exception leaving `fn` leaves with its credentials masked,
    so the flow run's state message, its logged traceback and the failure alert carry none; a
    database error leaves as a LedgerError of one line."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        install_log_redaction()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            ledger_error = _as_ledger_error(exc)
            if ledger_error is not None:
                raise ledger_error from None
            safe = scrub(exc)
            if safe is exc:
                raise
            raise safe from None

    import inspect

    # The signature resolved here: Prefect reads the parameters' types from it (inspect.signature
    # stops at __signature__), and the wrapper's module is not the flow's (its string annotations
    # would not resolve). __wrapped__ stays, so inspect.getsource shows the flow's own body.
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)
    wrapper.__annotations__ = {**{n: p.annotation for n, p in wrapper.__signature__.parameters.items()},
                               "return": wrapper.__signature__.return_annotation}
    return wrapper
