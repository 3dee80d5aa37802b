"""Serve the bare baseline handler: ``python bench/serve_bare.py uvicorn|granian PORT``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    server, port = sys.argv[1], int(sys.argv[2])
    if server == "uvicorn":
        import uvicorn
        from bare_app import app

        uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                    access_log=False, proxy_headers=False, server_header=False,
                    date_header=False, log_level="warning", backlog=2048)
    elif server == "granian":
        from granian import Granian
        from granian.constants import Interfaces, Loops

        Granian("bare_app:app", address="127.0.0.1", port=port, interface=Interfaces.ASGI,
                loop=Loops.uvloop, websockets=False, log_enabled=False, backlog=2048).serve()
    else:
        raise SystemExit(f"unknown server {server!r}")


if __name__ == "__main__":
    main()
