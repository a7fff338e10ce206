"""Keeps the router running: restarts it with backoff when it crashes.

``weave launch`` starts ``weave-router supervise`` detached (own session, stdio to the log file).
The supervisor writes $WEAVE_RUN_DIR/weave.pid and runs ``weave-router run`` as its child:

- exit 0, or SIGTERM/SIGINT received            -> stop (SIGTERM is forwarded to the router)
- exit EXIT_NO_RESTART (bad configuration)      -> stop; restarting cannot help
- anything else (crash, SIGKILL, OOM)           -> restart after ``restart_delay``

The backoff is a pure function of the failure streak so it can be tested without waiting.
Restarted routers see WEAVE_RESTART_COUNT > 0 and reconnect to their persisted targets.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from weave_cli.names import Paths
from weave_cli.router import state

EXIT_NO_RESTART = 78  # EX_CONFIG: the router refused its configuration
STABLE_AFTER = 60.0  # a router that ran this long resets the failure streak
log = logging.getLogger("weave.supervisor")


def restart_delay(streak: int) -> float:
    """Seconds to wait before restart number ``streak`` (1-based): 0.5, 1, 2, 4 ... capped at 30."""
    return float(min(30.0, 0.5 * 2 ** max(0, streak - 1)))


def next_streak(streak: int, ran_for: float) -> int:
    return 1 if ran_for >= STABLE_AFTER else streak + 1


class Supervisor:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if state.acquire_launcher_lock(self.paths) is None:
            log.error("another weave launcher runs with %s; not starting", self.paths.run_dir)
            return EXIT_NO_RESTART
        state.write_pid(self.paths.launcher_pidfile)
        streak, restarts = 0, 0
        try:
            while not self.stopping:
                env = dict(os.environ, WEAVE_SUPERVISED="1", WEAVE_RESTART_COUNT=str(restarts))
                started = time.monotonic()
                self.child = subprocess.Popen(
                    [sys.executable, "-m", "weave_cli.router.entry", "run"], env=env
                )
                if self.stopping:  # the signal arrived while the child was being spawned
                    self.child.terminate()
                code = self.child.wait()
                if self.stopping or code == 0:
                    return 0
                if code == EXIT_NO_RESTART:
                    log.error("router refused its configuration; not restarting")
                    return code
                streak = next_streak(streak, time.monotonic() - started)
                delay = restart_delay(streak)
                log.warning("router exited with status %s; restarting in %.1fs", code, delay)
                deadline = time.monotonic() + delay
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.05)
                restarts += 1
            return 0
        finally:
            state.remove_if_mine(self.paths.launcher_pidfile)


def main(paths: Paths) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return Supervisor(paths).run()
