"""``vlajepa serve``: serve a checkpoint to robots over openpi's websocket protocol."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from vlajepa.commands.arguments import existing_path

EPILOG = """\
protocol: openpi's (msgpack + numpy over a websocket): metadata frame on connect, an observation map in
({"observation.images.<camera>": uint8 HWC, "observation.state": float32, "prompt" or "task": str}),
{"actions": float32 [H, D], "server_timing": {...}} out, errors as text frames. GET /healthz answers 200.

examples:
  vlajepa serve --checkpoint outputs/run/checkpoints/last
  vlajepa serve --checkpoint outputs/run/checkpoints/last --port 0 --max-batch 8
  vlajepa eval --policy remote:ws://127.0.0.1:8000 --tasks reach-v3
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a checkpoint over openpi's websocket protocol (for robots and remote evaluation)",
        description="Load a checkpoint and answer observation requests with action chunks over a websocket, "
        "compatible with openpi's WebsocketClientPolicy. Binds 127.0.0.1 by default: the protocol has no "
        "authentication, so expose it beyond this machine only on a trusted network.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=existing_path("checkpoint folder", folder=True),
        help="checkpoint directory of any registered policy (from vlajepa train)",
    )
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
    from vlajepa.serve.loading import load_served_policy
    from vlajepa.serve.server import PolicyServer, ServerConfig

    loaded = load_served_policy(args.checkpoint)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1e3,
        max_message_bytes=int(args.max_message_mb * 2**20),
        max_connections=args.max_connections,
    )
    server = PolicyServer(loaded.policy, loaded.spec, config)
    try:
        asyncio.run(_serve(server))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(server) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    spec = server.spec
    print(  # noqa: T201 - CLI output: the address clients connect to
        f"serving {spec.model.get('name', 'policy')} on {server.url} (health: http://{server.config.host}:"
        f"{server.port}/healthz); actions [{spec.chunk_length}, {spec.action_dim}], cameras "
        f"{', '.join(spec.image_keys)}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await server.close()
        print("server stopped", file=sys.stderr, flush=True)  # noqa: T201 - CLI output
