"""Composing per-request hooks: every hook is called in order, and a hook that raises is logged and
counted and never fails the request (see :mod:`runtime.core.record` for the hook contract)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..core.codes import Outcome
from ..core.record import Hook, RequestRecord

log = logging.getLogger(__name__)


class CompositeHook:
    """Calls every hook in order; isolates their failures."""

    def __init__(self, hooks: Sequence[Hook], on_hook_error: Callable[[str], None] | None = None) -> None:
        self.hooks = tuple(hooks)
        self._on_hook_error = on_hook_error

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        for hook in self.hooks:
            try:
                hook.on_request(outcome, record)
            except Exception:
                name = type(hook).__name__
                log.exception("hook %s failed for request %s", name, record.request_id)
                if self._on_hook_error is not None:
                    self._on_hook_error(name)
