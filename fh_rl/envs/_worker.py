"""Entry point of a rollout worker: ``python -m fh_rl.envs._worker FD``.

Workers are started as fresh interpreters (not multiprocessing's spawn, which
re-imports the parent's ``__main__`` and with it torch and the training
script): they import only fh_rl.envs and the environment libraries. FD is one
end of a socket pair over which the parent sends the worker's configuration
and then its commands (see ``fh_rl.envs.workers``).
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    conn = Connection(int(sys.argv[1]))
    from fh_rl.envs.workers import serve

    serve(conn, *conn.recv())


if __name__ == "__main__":
    main()
