"""`spky mcp …`: a thin shell over the embedding API."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

import anyio

from .config import ServerConfig
from .server import McpServer
from .transport import LOOPBACK_HOSTS

DEFAULT_PORT = 8765


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free one)")
    parser.add_argument("--data-dir", default=None, help="where the embedded store lives")
    parser.add_argument("--public-url", default=None, help="the URL clients use, if proxied")
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an Origin browsers may call from (repeatable)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host header value to accept (repeatable)",
    )
    parser.add_argument(
        "--profile",
        choices=("product", "conformance"),
        default="product",
        help="'conformance' serves the official suite's fixtures, without auth, on loopback only",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spky", description="Sp00ky Cloud command line.")
    top = parser.add_subparsers(dest="area", required=True)
    mcp = top.add_parser("mcp", help="the Sp00ky MCP server and its tokens")
    commands = mcp.add_subparsers(dest="command", required=True)
    add_serve_arguments(commands.add_parser("serve", help="run the MCP server"))
    return parser


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        allowed_origins=tuple(args.allowed_origin),
        allowed_hosts=tuple(args.allowed_host),
        profile=args.profile,
        log_level=args.log_level,
        data_dir=args.data_dir or os.environ.get("SP00KY_MCP_DATA_DIR"),
    )


def build_server(config: ServerConfig) -> McpServer:
    if config.profile == "conformance":
        if config.host not in LOOPBACK_HOSTS and not config.host.startswith("127."):
            raise SystemExit(
                "spky: the conformance profile has no authentication, so it only "
                "binds a loopback address; drop --host or use 127.0.0.1."
            )
        from .fixtures import conformance_catalogue

        return McpServer(config, conformance_catalogue())
    from .product import build_product

    return build_product(config).server


async def run_server(server: McpServer) -> None:
    async with anyio.create_task_group() as tasks:
        await tasks.start(server.serve)
        print(f"sp00ky-mcp listening on {server.url}", flush=True)
        tasks.start_soon(_stop_on_signal, server)
        await server.wait_stopped()
        tasks.cancel_scope.cancel()


async def _stop_on_signal(server: McpServer) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("sp00ky-mcp shutting down", flush=True)
            server.shutdown()
            return


def serve(args: argparse.Namespace) -> int:
    config = config_from(args)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    server = build_server(config)
    anyio.run(run_server, server)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


def serve_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sp00ky-mcp", description="Run the Sp00ky MCP server.")
    add_serve_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
