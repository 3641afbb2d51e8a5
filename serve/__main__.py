"""`python -m serve`: the web demo and API on one bundle and the zoo around it (docs/web-demo.md)."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from edge_runtime.errors import KwsError

DEFAULT_MODEL = "artifacts/edge"
DEFAULT_ROOT = "artifacts"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_UPLOAD_MB = 10.0


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m serve",
        description="Serve the keyword-spotting web demo (/), OpenAPI docs (/docs) and the /v1 API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundle folder served by default (its manifest.json)")
    parser.add_argument(
        "--models-root",
        default=DEFAULT_ROOT,
        help="folder searched for more bundles (the zoo, chosen by name); empty: only --model",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on; loopback only unless you pass another (0.0.0.0)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (1-65535)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest WAV upload accepted by /v1/score"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level",
    )
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    if not 1 <= args.port <= 65535:
        raise KwsError(f"--port {args.port} must be in 1..65535")
    if not args.max_upload_mb > 0:
        raise KwsError(f"--max-upload-mb {args.max_upload_mb} must be > 0")
    check_can_listen(args.host, args.port)
    if not Path(args.model).is_dir():
        raise KwsError(f"--model {args.model}: not a folder; pass a bundle folder such as {DEFAULT_MODEL}")


def check_can_listen(host: str, port: int) -> None:
    """Fail now, with one line, if the address is unknown or the port taken (uvicorn would log and exit 0)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise KwsError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check(args)
        from .app import create_app
        from .zoo import build_zoo

        zoo = build_zoo(Path(args.model), Path(args.models_root) if args.models_root else None)
        app = create_app(zoo, int(args.max_upload_mb * 1024 * 1024))
    except KwsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: the API and page are reachable from other machines", file=sys.stderr)
    import uvicorn

    print(
        f"serving {zoo.default} ({len(zoo.entries)} model(s) in the zoo) on http://{args.host}:{args.port}/ "
        f"(API docs at /docs)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, ws="websockets")
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    sys.exit(main())
