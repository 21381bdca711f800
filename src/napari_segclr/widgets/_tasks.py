"""Run a library call off the GUI thread, with a progress bar and a cancel.

Library functions report progress through a ``progress(done, total)`` callback.
Here that callback drives a napari progress bar and, once the user cancels,
raises inside the library call so it stops at its next report. Errors in the
user's input (``SegclrError``) become a one-line notification, never a
traceback dialog.

The progress bar lives on the GUI thread: reports from the worker reach it
through a queued Qt signal, because napari's activity dialog processes Qt
events when a bar changes, and doing that from a worker thread can draw the
canvas off the GUI thread and abort napari.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from napari.qt.threading import create_worker
from napari.utils import progress as progress_bar
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ..exceptions import SegclrError

T = TypeVar("T")
Progress = Callable[[int, int], None]


class _Cancelled(Exception):
    pass


class _Reports(QObject):
    """Carries ``(done, total)`` from the worker thread to the bar on the GUI thread."""

    report = Signal(object, object)  # Python ints: counts may pass 2**31


def _show(bar: Any, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


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
        self._reports = _Reports()
        self.worker: Any = None

    def start(self) -> None:
        """Start in a worker thread; results arrive on the GUI thread."""
        bar = progress_bar(total=0, desc=self._description)
        self._reports.report.connect(lambda done, total: _show(bar, done, total))
        self.worker = create_worker(self._body, self._reports.report.emit, _start_thread=False)
        self.worker.returned.connect(self._deliver)
        self.worker.finished.connect(bar.close)
        self.worker.start()

    def run(self) -> None:
        """Run on the calling thread (scripts, tests, screenshots)."""
        with progress_bar(total=0, desc=self._description) as bar:
            outcome = self._body(lambda done, total: _show(bar, done, total))
        self._deliver(outcome)

    def cancel(self) -> None:
        self._cancel.set()

    def _body(self, display: Progress) -> tuple[str, Any]:
        def report(done: int, total: int) -> None:
            if self._cancel.is_set():
                raise _Cancelled
            display(done, total)

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


class TaskSlot:
    """The one task a widget runs at a time, and what the widget does once it is idle again.

    ``on_idle`` runs on the GUI thread after the task's own ``on_done`` (or its
    error or cancel message), whatever the outcome.
    """

    def __init__(self, on_idle: Callable[[], None]) -> None:
        self.task: Task | None = None
        self._on_idle = on_idle

    @property
    def busy(self) -> bool:
        return self.task is not None

    def refuse(self, message: str) -> bool:
        """True while a task runs, and then ``message`` goes to napari's notifications."""
        if self.busy:
            show_info(message)
        return self.busy

    def run(
        self,
        work: Callable[[Progress], T],
        *,
        description: str,
        on_done: Callable[[T], None],
        background: bool,
    ) -> None:
        """Run ``work`` in a worker (``background``) or on this thread (scripts, tests)."""
        task = Task(
            work, description=description, on_done=on_done, on_finish=lambda: self._ended(task)
        )
        self.task = task
        task.start() if background else task.run()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _ended(self, task: Task) -> None:
        if self.task is task:
            self.task = None
            self._on_idle()
