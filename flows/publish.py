"""Prefect artifacts, with every text through arflow.safety.redact: an artifact is read by anyone
with access to the Prefect UI, so no credential (a database URL's password, a token in a link)
may reach one. Same names and arguments as prefect.artifacts."""

from __future__ import annotations

from prefect import artifacts as _artifacts

from arflow.safety import redact


def _clean(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def create_markdown_artifact(*, markdown: str, description: str | None = None, **kw):
    return _artifacts.create_markdown_artifact(markdown=redact(markdown), description=_clean(description), **kw)


def create_table_artifact(*, table, description: str | None = None, **kw):
    return _artifacts.create_table_artifact(table=_clean(table), description=_clean(description), **kw)


def create_link_artifact(*, link: str, link_text: str | None = None, description: str | None = None, **kw):
    return _artifacts.create_link_artifact(link=redact(link), link_text=_clean(link_text),
                                           description=_clean(description), **kw)
