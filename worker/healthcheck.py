"""Container health check: exit 0 when a process on this host beat its heartbeat recently."""

from __future__ import annotations

import socket
import sys

from core.connection import connect
from core.settings import Settings
from core.workers import Presence


def main() -> int:
    settings = Settings.from_env()
    host = socket.gethostname()
    try:
        beats = Presence(connect(settings), settings).live()
    except Exception as exc:  # Redis away: unhealthy, with the reason
        print(f"unhealthy: {exc}")
        return 1
    mine = [b for b in beats if b.worker.startswith(host + ":") and b.model_version]
    if not mine:
        print(f"unhealthy: no process on {host} holds the model")
        return 1
    print(f"healthy: {len(mine)} process(es) on {host} serve {mine[0].model_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
