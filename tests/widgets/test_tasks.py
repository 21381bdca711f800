"""The worker task: progress reaches its bar on the GUI thread, results and errors arrive."""

from __future__ import annotations

import threading

import pytest

from napari_segclr.exceptions import SegclrError
from napari_segclr.widgets import _tasks

pytestmark = pytest.mark.gui


@pytest.fixture
def shown_on(monkeypatch):
    threads: list[tuple[str, int, int]] = []
    show = _tasks._show

    def record(bar, done, total):
        threads.append((threading.current_thread().name, done, total))
        show(bar, done, total)

    monkeypatch.setattr(_tasks, "_show", record)
    return threads


def _count(progress):
    for done in range(1, 4):
        progress(done, 3)
    return threading.current_thread().name


def test_progress_is_shown_on_the_gui_thread_while_the_work_runs_in_a_worker(qtbot, shown_on):
    results = []
    task = _tasks.Task(_count, description="counting", on_done=results.append)
    task.start()
    qtbot.waitUntil(lambda: len(results) == 1 and len(shown_on) == 3, timeout=10_000)
    main = threading.main_thread().name
    assert results[0] != main
    assert [name for name, _, _ in shown_on] == [main] * 3
    assert [(done, total) for _, done, total in shown_on] == [(1, 3), (2, 3), (3, 3)]


def test_errors_in_the_users_input_become_a_notification(qtbot, monkeypatch, shown_on):
    errors = []
    monkeypatch.setattr(_tasks, "show_error", errors.append)

    def fail(progress):
        raise SegclrError("bad input")

    finished = []
    task = _tasks.Task(
        fail, description="x", on_done=pytest.fail, on_finish=lambda: finished.append(1)
    )
    task.start()
    qtbot.waitUntil(lambda: finished == [1], timeout=10_000)
    assert errors == ["bad input"]


def test_cancel_stops_the_work_at_its_next_report(qtbot, monkeypatch, shown_on):
    infos = []
    monkeypatch.setattr(_tasks, "show_info", infos.append)
    started, release = threading.Event(), threading.Event()

    def wait_then_report(progress):
        started.set()
        release.wait(5)
        progress(1, 2)
        return "finished"

    results = []
    task = _tasks.Task(wait_then_report, description="long", on_done=results.append)
    task.start()
    assert started.wait(5)
    task.cancel()
    release.set()
    qtbot.waitUntil(lambda: infos == ["long: cancelled"], timeout=10_000)
    assert results == [] and shown_on == []
