"""``weave-router``: the daemon's entry point.

    weave-router run        run the router in the foreground (what systemd or the supervisor runs)
    weave-router supervise  run the router under a supervisor that restarts it when it crashes

Both read the launch configuration from $WEAVE_RUN_DIR/launch.json (written 0600 by
``weave launch``), so nothing secret ever appears on a command line.
"""

from __future__ import annotations

import argparse
import sys

from weave_cli.names import Paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weave-router", description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "supervise"])
    args = parser.parse_args(argv)
    paths = Paths.from_env()
    if args.mode == "supervise":
        from weave_cli.router import supervisor

        return supervisor.main(paths)
    from weave_cli.router import daemon

    return daemon.main(paths)


if __name__ == "__main__":
    sys.exit(main())
