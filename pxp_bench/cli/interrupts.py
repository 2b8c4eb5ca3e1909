"""What a long command does when it is refused or interrupted (Ctrl-C, SIGINT): one ``Interrupted: ...``
line saying what is kept, exit status 130, no traceback, no empty output folder left behind, and the
process gone within `HARD_DEADLINE_S` of the signal whatever it or its workers are doing.

A command decorated with `guarded_command` names the output folders it may create (`CommandGuard.
output_folders`) before it creates them, and says what an interruption keeps (`CommandGuard.kept`) as
it goes. On a refusal or an interruption the folders it created are removed again while empty; on an
interruption the line is printed and the command exits with 130, which `pxp_bench.cli.main` turns into
``os._exit`` so that nothing in the interpreter's shutdown can hold the process. Should the command not
get there in time (stuck in native code, swallowing the interrupt, waiting on a worker), a watchdog
thread, woken by the signal itself through Python's wakeup file descriptor (the C-level handler writes
it even while the main thread is busy), removes the empty folders, prints the line and ends the process
at the deadline; workers die with it (`pxp_bench.optimize.worker.die_with_parent`).
"""

from __future__ import annotations

import contextvars
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Union

from pxp_bench.cli.common import err_console

INTERRUPTED = 130
"""The exit status of an interrupted command (128 + SIGINT, as a shell reports it)."""
HARD_DEADLINE_S = 5.0
"""The longest an interrupted command lives after the signal."""
_SAYING_S = 0.5
"""At the deadline, how long the watchdog gives ``kept`` (when a function) to say what is kept."""
_EXIT_MARGIN_S = 1.0
Kept = Union[str, Callable[[], str]]


class CommandGuard:
    """One run of a guarded command: the folders it created, what an interruption keeps, the line said once."""

    def __init__(self, kept: str) -> None:
        self.fallback = kept
        """What the line says when ``kept`` cannot say it (a function that failed, or took too long)."""
        self.kept: Kept = kept
        """What an interruption keeps, as the rest of the line after ``Interrupted: ``, or a function that
        says it (e.g. counting finished trials); the command updates it as it goes."""
        self._created: list[list[Path]] = []
        self._said = False
        self._lock = threading.Lock()

    def output_folders(self, *folders: Path | None) -> None:
        """Note the folders on the way to each of ``folders`` that do not exist yet (call it before creating
        them): a refusal or interruption removes those it leaves empty. Deeper folders first."""
        for folder in folders:
            if folder is not None:
                folder = Path(folder)
                self._created.append([path for path in (folder, *folder.parents) if not _exists(path)])

    def remove_empty_folders(self) -> None:
        for created in self._created:
            for path in created:  # deepest first; a folder holding anything stays, and so do those above it
                try:
                    path.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    break

    def say(self, message: str | None = None) -> None:
        """Print ``Interrupted: <message, or what kept says>`` on stderr, unless it was printed already."""
        if message is None:
            try:
                message = self.kept() if callable(self.kept) else self.kept
            except Exception:  # e.g. a storage that cannot be read now: the line still comes
                message = self.fallback
        with self._lock:
            if self._said:
                return
            self._said = True
            err_console.print(f"Interrupted: {message}", highlight=False, soft_wrap=True)
            sys.stderr.flush()

    def _at_deadline(self, signalled: float) -> None:
        time.sleep(max(0.0, signalled + HARD_DEADLINE_S - _EXIT_MARGIN_S - time.monotonic()))
        self.remove_empty_folders()
        said: list[str] = []
        if callable(self.kept):  # in a thread of its own: what it reads may be held by the stuck command
            kept = self.kept

            def ask() -> None:
                try:
                    said.append(kept())
                except Exception:
                    pass

            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(_SAYING_S)
        self.say(said[0] if said else self.kept if isinstance(self.kept, str) else self.fallback)
        sys.stdout.flush()
        os._exit(INTERRUPTED)


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a path that cannot be looked at (a name too long) counts as existing: never
    one to remove."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


_current: contextvars.ContextVar[CommandGuard] = contextvars.ContextVar("pxp_bench_command_guard")


def command_guard() -> CommandGuard:
    """The guard of the command running now (a command decorated with `guarded_command`)."""
    return _current.get()


def guarded_command(kept: str):
    """Decorate a command: the `CommandGuard` (``kept``: what an interruption keeps at first) is
    `command_guard()` inside it; a ``KeyboardInterrupt`` becomes the one line and exit status 130."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            import typer

            guard = CommandGuard(kept)
            token = _current.set(guard)
            stop_watching = _watch_for_sigint(guard)
            try:
                return command(*args, **kwargs)
            except BaseException as exc:
                guard.remove_empty_folders()
                if not _interrupted(exc):
                    raise
                guard.say()
                raise typer.Exit(INTERRUPTED) from None
            finally:
                stop_watching()
                _current.reset(token)

        return wrapper

    return decorate


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C, or an error raised while one was handled: library code interrupted in
    the middle of its own bookkeeping can fail on its way out (Optuna, interrupted while it records a
    trial's end, raises an UnboundLocalError from its ``finally``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _watch_for_sigint(guard: CommandGuard):
    """Start the watchdog (main thread only: elsewhere Python takes no signals); returns what stops it. Once a
    SIGINT has armed it, it is not stopped: it also covers the command's way out."""
    try:
        reader, writer = os.pipe()
    except OSError:
        return lambda: None
    try:
        os.set_blocking(writer, False)
        previous = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        os.close(reader)
        os.close(writer)
        return lambda: None
    threading.Thread(target=_watch, args=(reader, guard), daemon=True,
                     name="pxp-bench interrupt watchdog").start()

    def stop() -> None:
        signal.set_wakeup_fd(previous)
        try:
            os.write(writer, b"\0")  # ends the watchdog unless a SIGINT came first
        except OSError:
            pass
        os.close(writer)

    return stop


def _watch(reader: int, guard: CommandGuard) -> None:
    sigint = bytes([signal.SIGINT])
    try:
        while True:
            data = os.read(reader, 64)
            before = data.split(sigint)[0]
            if not data or b"\0" in before:
                return  # the command ended before any SIGINT
            if sigint in data:
                break
    finally:
        os.close(reader)
    guard._at_deadline(time.monotonic())
