"""``vlajepa serve``: serve a checkpoint to robots over openpi's websocket protocol."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from vlajepa.commands.arguments import add_planner_arguments, existing_path, planner_options

EPILOG = """\
protocol: openpi's (msgpack + numpy over a websocket): metadata frame on connect, an observation map in
({"observation.images.<camera>": uint8 HWC, "observation.state": float32, "prompt" or "task": str}),
{"actions": float32 [H, D], "server_timing": {...}} out, errors as text frames. GET /healthz answers 200.
SIGTERM or Ctrl-C drains: no new connections, in-flight requests are answered, then the server exits 0.

examples:
  vlajepa serve --checkpoint outputs/run/checkpoints/last
  vlajepa serve --checkpoint outputs/run/checkpoints/last --port 0 --max-batch 8
  vlajepa serve --planner outputs/run_planner --candidates 16
  vlajepa eval --policy remote:ws://127.0.0.1:8000 --tasks reach-v3
  # on a robot network: keys from a file (one per line, chmod 600), TLS
  vlajepa serve --checkpoint CKPT --host 0.0.0.0 --api-key-file /etc/vlajepa/keys \\
      --tls-cert server.pem --tls-key server-key.pem
  VLAJEPA_API_KEY=... vlajepa eval --policy remote:wss://robot-pc:8000 --ca-file ca.pem --tasks reach-v3
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a checkpoint over openpi's websocket protocol (for robots and remote evaluation)",
        description="Load a checkpoint and answer observation requests with action chunks over a websocket, "
        "compatible with openpi's WebsocketClientPolicy. Binds 127.0.0.1 by default; to serve beyond this "
        "machine, require API keys (--api-key-file) and use TLS (--tls-cert/--tls-key).",
        epilog=EPILOG,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint",
        type=existing_path("checkpoint folder", folder=True),
        help="checkpoint directory of any registered policy (from vlajepa train)",
    )
    add_planner_arguments(source, parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default: 8000)")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=1,
        help="merge up to this many concurrent requests into one forward pass when the policy supports it; "
        ">1 trades per-connection reproducibility for throughput (default: 1)",
    )
    parser.add_argument(
        "--batch-wait-ms", type=float, default=0.0, help="extra wait for a batch to fill (default: 0)"
    )
    parser.add_argument(
        "--max-message-mb", type=float, default=16.0, help="largest accepted request in MiB (default: 16)"
    )
    parser.add_argument("--max-connections", type=int, default=64, help="concurrent clients (default: 64)")
    parser.add_argument(
        "--api-key-file",
        type=existing_path("API key file", folder=False),
        default=None,
        help="file with the accepted API keys, one per line (# comments allowed); clients send "
        "'Authorization: Api-Key <key>' (default: no authentication)",
    )
    parser.add_argument(
        "--tls-cert",
        type=existing_path("TLS certificate", folder=False),
        default=None,
        help="PEM certificate chain: serve wss:// (with --tls-key)",
    )
    parser.add_argument(
        "--tls-key", type=existing_path("TLS key", folder=False), default=None, help="PEM private key of --tls-cert"
    )
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        default=600.0,
        help="close a connection that sends nothing for this long; 0: never (default: 600)",
    )
    parser.add_argument(
        "--max-request-rate",
        type=float,
        default=100.0,
        help="requests per second per connection; more get an error reply; 0: unlimited (default: 100)",
    )
    parser.add_argument(
        "--drain-timeout-s",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may take to finish (default: 30)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from vlajepa.serve.auth import ApiKeys
    from vlajepa.serve.loading import load_served_policy
    from vlajepa.serve.server import PolicyServer, ServerConfig, server_ssl_context

    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("--tls-cert and --tls-key go together")
    # Checked before the (slow) checkpoint load, so a bad key file or certificate fails at once.
    api_keys = ApiKeys.from_file(args.api_key_file) if args.api_key_file is not None else None
    if args.tls_cert is not None:
        server_ssl_context(args.tls_cert, args.tls_key)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1e3,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_connections=args.max_connections,
        api_keys=api_keys,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        idle_timeout_s=args.idle_timeout_s,
        max_requests_per_s=args.max_request_rate,
        drain_timeout_s=args.drain_timeout_s,
    )
    loaded = load_served_policy(args.checkpoint or args.planner, **planner_options(args))
    asyncio.run(serve_until_signal(PolicyServer(loaded.policy, loaded.spec, config)))
    return 0


async def serve_until_signal(server) -> None:
    """Start ``server``, print where it listens, and serve until SIGTERM or SIGINT; then drain it (refuse new
    connections, answer in-flight requests, close the rest) and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    spec = server.spec
    health = f"{'https' if server.config.tls else 'http'}://{server.url.partition('://')[2]}/healthz"
    print(  # noqa: T201 - CLI output: the address clients connect to
        f"serving {spec.model.get('name', 'policy')} on {server.url} (health: {health}); actions "
        f"[{spec.chunk_length}, {spec.action_dim}], cameras {', '.join(spec.image_keys)}",
        flush=True,
    )
    try:
        await stop.wait()
        print("draining: refusing new connections, finishing in-flight requests", file=sys.stderr, flush=True)  # noqa: T201
    finally:
        await server.close()
        print("server stopped", file=sys.stderr, flush=True)  # noqa: T201 - CLI output
