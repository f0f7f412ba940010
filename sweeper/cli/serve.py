"""``serve``: browse every study of a store from a browser (reports made on request)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sweeper.cli.common import add_storage
from sweeper.errors import SweeperError


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="browse the store's studies and their reports in a browser")
    add_storage(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--out", default="reports",
                   help="reports folder it serves and refreshes (default reports/, where 'sweeper report' writes, "
                        "so pages made with --best are served too)")
    p.add_argument("--refresh", type=float, default=5.0,
                   help="seconds between checks for new trials while a study runs (default 5)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from sweeper.cli.server import ReportServer, make_server

    if args.refresh <= 0:
        raise SweeperError("--refresh must be > 0 seconds")
    out = Path(args.out)
    app = ReportServer(args.storage, out, args.refresh)
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        raise SweeperError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach it can read this store's studies",
              file=sys.stderr)
    print(f"serving {args.storage} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
