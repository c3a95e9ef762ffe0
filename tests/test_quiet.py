"""The unraisable-hook filter drops only asyncio's closed-loop callback errors."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any, Iterator

import pytest

from pdc.run.quiet import quiet_closed_loop_callbacks


def _unraisable(error: BaseException) -> Any:
    return types.SimpleNamespace(exc_type=type(error), exc_value=error, exc_traceback=error.__traceback__,
                                 err_msg=None, object=None)


def _closed_loop_error() -> RuntimeError:
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as error:
        return error
    raise AssertionError("a closed loop accepted a callback")


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001 — only to attach a traceback
        return caught


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    quiet_closed_loop_callbacks()
    yield reported


def test_closed_loop_callback_errors_are_dropped(seen: list[Any]) -> None:
    sys.unraisablehook(_unraisable(_closed_loop_error()))
    assert seen == []


def test_other_unraisables_pass_through(seen: list[Any]) -> None:
    same_text = _unraisable(_raised(RuntimeError("Event loop is closed")))  # not raised by asyncio
    other = _unraisable(_raised(ValueError("boom")))
    sys.unraisablehook(same_text)
    sys.unraisablehook(other)
    assert seen == [same_text, other]


def test_installing_twice_wraps_once(seen: list[Any]) -> None:
    hook = sys.unraisablehook
    quiet_closed_loop_callbacks()
    assert sys.unraisablehook is hook
