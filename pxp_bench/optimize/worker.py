"""A search-only worker of a study (``pxp-bench optimize --jobs N`` starts N - 1 of them): it runs trials
on the shared storage until the study holds its trials, and leaves the final evaluation to the command.

Arguments: the study's configuration as JSON (`pxp_bench.optimize.config.config_to_json`) and the pid of
the command that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """End this worker as soon as the command that started it (pid ``parent``) ends, however it ends.

    A worker left behind holds its memory and cores and runs trials nobody waits for. On Linux the
    kernel sees to it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` kills the worker the moment its parent dies,
    even while it is deep in a native kernel; checking the parent pid right after closes the race with a
    parent that died before the call. Where prctl is missing, a daemon thread polls the parent pid once
    a second (an orphan is adopted by another process). SIGKILL, not a gentler signal: nothing depends on
    the worker cleaning up, since the trial it leaves running is failed and retried by the heartbeat
    check of the next run (`pxp_bench.optimize.journal`). Called first, before the heavy imports.
    """
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    if libc is not None and libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
        if os.getppid() != parent:
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def main() -> None:
    die_with_parent(int(sys.argv[2]))
    import optuna

    from pxp_bench.errors import PxpBenchError
    from pxp_bench.optimize.config import config_from_json
    from pxp_bench.optimize.study import run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is raised and reported below
    try:
        run_study(config_from_json(sys.argv[1]), evaluate_best=False)
    except PxpBenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # the command stops its workers with SIGINT: Optuna has failed the running trial
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
