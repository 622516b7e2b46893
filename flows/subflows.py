"""Subflows (the four lanes of a daily run, the days of a backfill) run in their parent's process
and thread, so the parent's heartbeat already says that process is alive. Prefect would start a
heartbeat thread for each subflow as well, and its flow engine waits for that thread to notice the
end of the run: up to a second per subflow, five times a daily run. Inside `sharing_the_parents_heartbeat()`
the subflows started send none; the parent's goes on (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, default 180 s)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def sharing_the_parents_heartbeat() -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if get_current_settings().flows.heartbeat_frequency is None:  # already off: nothing to change
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
