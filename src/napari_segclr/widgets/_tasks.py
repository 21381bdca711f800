"""Run a library call off the GUI thread, with a progress bar and a cancel.

Library functions report progress through a ``progress(done, total)`` callback.
Here that callback drives a napari progress bar and, once the user cancels,
raises inside the library call so it stops at its next report. Errors in the
user's input (``SegclrError``) become a one-line notification, never a
traceback dialog.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from napari.qt.threading import create_worker
from napari.utils import progress as progress_bar
from napari.utils.notifications import show_error, show_info

from ..exceptions import SegclrError

T = TypeVar("T")
Progress = Callable[[int, int], None]


class _Cancelled(Exception):
    pass


class Task(Generic[T]):
    """One library call ``func(progress)`` run in a napari thread worker."""

    def __init__(
        self,
        func: Callable[[Progress], T],
        *,
        description: str,
        on_done: Callable[[T], None],
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        self._func = func
        self._description = description
        self._on_done = on_done
        self._on_finish = on_finish
        self._cancel = threading.Event()
        self.worker: Any = None

    def start(self) -> None:
        """Start in a worker thread; results arrive on the GUI thread."""
        self.worker = create_worker(self._body, _start_thread=False)
        self.worker.returned.connect(self._deliver)
        self.worker.start()

    def run(self) -> None:
        """Run on the calling thread (scripts, tests, screenshots)."""
        self._deliver(self._body())

    def cancel(self) -> None:
        self._cancel.set()

    def _body(self) -> tuple[str, Any]:
        with progress_bar(total=0, desc=self._description) as bar:

            def report(done: int, total: int) -> None:
                if self._cancel.is_set():
                    raise _Cancelled
                bar.total = total
                bar.update(done - bar.n)

            try:
                return "done", self._func(report)
            except _Cancelled:
                return "cancelled", None
            except SegclrError as err:
                return "error", str(err)

    def _deliver(self, outcome: tuple[str, Any]) -> None:
        status, value = outcome
        try:
            if status == "done":
                self._on_done(value)
            elif status == "error":
                show_error(value)
            else:
                show_info(f"{self._description}: cancelled")
        finally:
            if self._on_finish is not None:
                self._on_finish()
