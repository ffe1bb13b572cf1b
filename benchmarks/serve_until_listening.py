"""``gitpod-sim serve ARGS`` up to ``listening on``, then exit at once: start-up alone, for a
profiler or an instruction counter that needs the process to end (see ``bench_misc.startup``).

python benchmarks/serve_until_listening.py [SERVE ARGS]   (default: --port 0 --clock manual --quiet)
"""

from __future__ import annotations

import builtins
import os
import sys
from typing import Any

_print = builtins.print


def _print_then_leave(*args: Any, **kwargs: Any) -> None:
    _print(*args, **kwargs)
    if args and str(args[0]).startswith("listening on"):
        sys.stdout.flush()
        os._exit(0)  # the server is up: nothing after this is start-up


if __name__ == "__main__":
    builtins.print = _print_then_leave  # the CLI prints "listening on" with print()
    from simulator.cli import main

    args = sys.argv[1:] or ["--port", "0", "--clock", "manual", "--quiet"]
    sys.argv = ["gitpod-sim", "serve", *args]
    main()
