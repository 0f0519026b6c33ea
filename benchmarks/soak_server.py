"""Soak test of the policy server: hours-like load on loopback, with hostile traffic mixed in.

Starts ``vlajepa serve`` (the real command: API key file, default limits, one torch thread) on 127.0.0.1 with a
tiny randomly initialized checkpoint, then for ``--minutes``:

- 8 authenticated closed-loop clients (each sends its next request as soon as its reply arrives: the highest
  rate the server sustains on this machine), resetting every 50 requests and reconnecting every 1000;
- one attacker thread, every ``--bad-interval-s``, tries in turn: no key, a wrong key, the key in the query
  string only, a wrong auth scheme, a malformed request on an authenticated connection (ten kinds), an oversized
  frame, raw non-HTTP bytes, and a plain HTTP request without the websocket upgrade.

Every valid request must get actions (``valid_errors`` counts the ones that did not), every bad attempt must be
refused (``bad_accepted`` counts the ones that were not), and the server's RSS must not grow: it is sampled every
5 s and reported per minute next to throughput and p50/p99 latency. At the end the server gets SIGTERM and must
drain and exit 0. Everything is bounded: the duration, and ``--max-requests`` per client.

Loopback only: the server binds 127.0.0.1 and every connection goes there.

    python benchmarks/soak_server.py --minutes 1 --out /tmp/soak      # a short development run
    python benchmarks/soak_server.py --minutes 20                     # writes benchmarks/results/serve/soak.*
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/<name>.py`: import sibling scripts as benchmarks.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from benchmarks.bench_server import KEY, random_observation  # noqa: E402
from vlajepa.constants import OBS_STATE  # noqa: E402
from vlajepa.eval.report import current_command  # noqa: E402
from vlajepa.io_utils import (  # noqa: E402
    git_commit,  # noqa: E402
    with_extension,
    write_report_files,
)
from vlajepa.serve import Client, RetryConfig, ServerError, packb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve"
HOST = "127.0.0.1"  # loopback only, by design
MAX_MESSAGE_MB = 1
RESET_EVERY, RECONNECT_EVERY = 50, 1000
RSS_SAMPLE_S = 5.0
BAD_KINDS = (
    "no_key", "wrong_key", "key_in_query_only", "wrong_scheme", "malformed_request", "oversized_frame",
    "raw_bytes", "http_without_upgrade",
)  # fmt: skip


def _malformed(index: int, valid: dict) -> bytes | str:
    """Ten kinds of invalid request, in turn; each must get a text (error) reply."""
    kind = index % 10
    if kind == 0:
        return secrets.token_bytes(64)
    if kind == 1:
        packed = packb(valid)
        return packed[: len(packed) // 2]
    if kind == 2:
        return "a text frame is not a request"
    obs = dict(valid)
    if kind == 3:
        obs[KEY] = obs[KEY].astype(np.float32)
    elif kind == 4:
        obs[OBS_STATE] = np.array([np.nan, 0, 0, 0], np.float32)
    elif kind == 5:
        del obs[KEY]
    elif kind == 6:
        obs[KEY] = np.zeros((2000, 4, 3), np.uint8)  # larger than 1024 px per side
    elif kind == 7:
        header = {"__ndarray__": True, "data": b"\x00" * 8, "dtype": "O", "shape": [1]}  # object dtype
        return msgpack.packb({"prompt": obs["prompt"], OBS_STATE: header})
    elif kind == 8:
        obs["prompt"] = "x" * 3000
    else:
        return msgpack.packb({"__ctrl__": "reseed", "seed": "not an int"})
    return packb(obs)


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Soak:
    """Shared state of one soak run: the server's URL and key, the samples, the counters."""

    def __init__(self, url: str, api_key: str, deadline: float, t0: float, max_requests: int) -> None:
        self.url, self.api_key, self.deadline, self.t0 = url, api_key, deadline, t0
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.samples: list[tuple[float, float]] = []  # (send time since t0, latency s) of valid requests
        self.valid_errors: list[str] = []
        self.bad = {kind: Counter() for kind in BAD_KINDS}
        self.bad_notes: list[str] = []
        self.connections = 0

    # --- valid clients ----------------------------------------------------------------------------------------

    def _client(self) -> Client:
        with self.lock:
            self.connections += 1
        return Client(self.url, api_key=self.api_key, retry=RetryConfig(max_attempts=5, timeout_s=10.0),
                      request_timeout_s=30.0)  # fmt: skip

    def valid_client(self, index: int) -> None:
        observations = [random_observation(1000 * index + i) for i in range(4)]
        client = self._client()
        local: list[tuple[float, float]] = []
        try:
            for i in range(self.max_requests):
                if time.monotonic() >= self.deadline:
                    break
                try:
                    if i and i % RECONNECT_EVERY == 0:
                        client.close()
                        client = self._client()
                    if i % RESET_EVERY == 0:
                        client.reset()
                    started = time.perf_counter()
                    reply = client.infer(observations[i % len(observations)])
                    latency = time.perf_counter() - started
                    actions = reply["actions"]
                    if actions.shape != (4, 4) or not np.isfinite(actions).all():
                        raise ServerError(f"bad actions of shape {actions.shape}")
                    local.append((started - self.t0, latency))
                except (ServerError, ConnectionError, TimeoutError, OSError) as err:
                    with self.lock:
                        self.valid_errors.append(f"client {index} request {i}: {type(err).__name__}: {err}"[:300])
                    client.close()
                    client = self._client()
        finally:
            client.close()
            with self.lock:
                self.samples.extend(local)

    # --- bad attempts -----------------------------------------------------------------------------------------

    def _raw(self, url: str, headers: dict[str, str] | None):
        return connect(url, compression=None, open_timeout=10, proxy=None, additional_headers=headers,
                       max_size=None)  # fmt: skip

    def _handshake_refused(self, url: str, headers: dict[str, str] | None) -> bool:
        try:
            ws = self._raw(url, headers)
        except InvalidStatus as err:
            if err.response.status_code == 401:
                return True
            raise
        ws.close()
        return False

    def _malformed_refused(self, index: int, valid: dict) -> bool:
        with self._raw(self.url, {"Authorization": f"Api-Key {self.api_key}"}) as ws:
            ws.recv(timeout=10)
            ws.send(_malformed(index, valid))
            reply = ws.recv(timeout=30)
        return isinstance(reply, str)  # an error text, not actions

    def _oversized_refused(self) -> bool:
        with self._raw(self.url, {"Authorization": f"Api-Key {self.api_key}"}) as ws:
            ws.recv(timeout=10)
            ws.send(b"\x00" * (MAX_MESSAGE_MB * 2**20 + 1024))
            try:
                ws.recv(timeout=30)
            except ConnectionClosed as err:
                return err.rcvd is not None and err.rcvd.code == 1009
        return False

    def _http_refused(self, payload: bytes) -> bool:
        port = int(self.url.rsplit(":", 1)[1])
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            response = b""
            while chunk := sock.recv(4096):
                response += chunk
                if len(response) > 65536:
                    break
        return b" 101 " not in response.split(b"\r\n", 1)[0]

    def attempt(self, kind: str, index: int, valid: dict) -> bool:
        """One bad attempt; True when it was refused."""
        port = self.url.rsplit(":", 1)[1]
        if kind == "no_key":
            return self._handshake_refused(self.url, None)
        if kind == "wrong_key":
            return self._handshake_refused(self.url, {"Authorization": f"Api-Key {secrets.token_hex(16)}"})
        if kind == "key_in_query_only":
            return self._handshake_refused(f"{self.url}/?api_key={self.api_key}", None)
        if kind == "wrong_scheme":
            return self._handshake_refused(self.url, {"Authorization": f"Bearer {self.api_key}"})
        if kind == "malformed_request":
            return self._malformed_refused(index, valid)
        if kind == "oversized_frame":
            return self._oversized_refused()
        if kind == "raw_bytes":
            return self._http_refused(secrets.token_bytes(200))
        request = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Api-Key {self.api_key}\r\n\r\n"
        return self._http_refused(request.encode())

    def attacker(self, interval_s: float) -> None:
        valid = random_observation(0)
        for index in range(10**7):  # bounded; stops at the deadline
            if time.monotonic() >= self.deadline:
                break
            kind = BAD_KINDS[index % len(BAD_KINDS)]
            try:
                refused = self.attempt(kind, index // len(BAD_KINDS), valid)
                outcome = "refused" if refused else "accepted"
            except Exception as err:  # noqa: BLE001 - anything unexpected is recorded, not hidden
                outcome = "unexpected"
                if len(self.bad_notes) < 20:
                    self.bad_notes.append(f"{kind}: {type(err).__name__}: {err}"[:300])
            self.bad[kind][outcome] += 1
            time.sleep(interval_s)


def _per_minute(samples: list[tuple[float, float]], rss: list[tuple[float, float]], minutes: int) -> list[dict]:
    rows = []
    for minute in range(minutes):
        latencies = np.array([lat for t, lat in samples if minute * 60 <= t < (minute + 1) * 60]) * 1e3
        in_minute = [mb for t, mb in rss if minute * 60 <= t < (minute + 1) * 60]
        rows.append({
            "minute": minute + 1,
            "requests": int(latencies.size),
            "throughput_rps": round(latencies.size / 60, 2),
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
            "latency_p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies.size else None,
            "rss_mb": round(in_minute[-1], 1) if in_minute else None,  # the last sample of the minute
            "rss_mb_max": round(max(in_minute), 1) if in_minute else None,
        })  # fmt: skip
    return rows


def _markdown(result: dict) -> str:
    checks = result["checks"]
    lines = [
        "# Policy server soak test",
        "",
        f"Command: `{result['command']}`  ",
        f"Git commit: `{result['git_commit']}`  ",
        f"Duration: {result['duration_s'] / 60:.1f} min; {result['clients']} closed-loop clients with an API key "
        f"(reset every {RESET_EVERY} requests, reconnect every {RECONNECT_EVERY}), one bad attempt every "
        f"{result['bad_interval_s']} s.  ",
        f"Server: `{result['server_command']}`, 127.0.0.1 only.  ",
        f"Model: {result['model']}.  ",
        f"Machine: {result['machine']['cpus']} CPUs shared with other work; load average before/after "
        f"{result['machine']['load_before']} / {result['machine']['load_after']}.",
        "",
        "| total | value |",
        "|---|---:|",
        f"| valid requests answered | {result['valid_requests']} |",
        f"| valid requests failed | {result['valid_errors']} |",
        f"| client connections opened | {result['client_connections']} |",
        f"| bad attempts | {result['bad_attempts']} |",
        f"| bad attempts accepted | {result['bad_accepted']} |",
        f"| bad attempts with an unexpected outcome | {result['bad_unexpected']} |",
        f"| server RSS after minute 1 / at the end (MB) | {result['rss_mb_first_minute']} / {result['rss_mb_end']} "
        f"({result['rss_change_pct']:+.1f} %) |",
        f"| RSS slope, minute 2 to the end (MB/min) | {result['rss_slope_mb_per_min']} |",
        f"| server exit code after SIGTERM / drain time | {result['server_exit_code']} / "
        f"{result['drain_s']} s |",
        f"| tracebacks in the server log | {result['server_tracebacks']} |",
        "",
        "| bad attempt | tries | refused | accepted | unexpected |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, counts in result["bad_by_kind"].items():
        lines.append(f"| {kind} | {sum(counts.values())} | {counts.get('refused', 0)} | "
                     f"{counts.get('accepted', 0)} | {counts.get('unexpected', 0)} |")  # fmt: skip
    lines += [
        "",
        "| minute | requests | req/s | p50 (ms) | p99 (ms) | RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["per_minute"]:
        lines.append(f"| {row['minute']} | {row['requests']} | {row['throughput_rps']} | {row['latency_p50_ms']} | "
                     f"{row['latency_p99_ms']} | {row['rss_mb']} |")  # fmt: skip
    lines += ["", "Checks: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in checks.items()) + ".", ""]
    if result["valid_error_examples"] or result["bad_notes"]:
        lines += ["Examples of failures:", ""]
        lines += [f"- `{note}`" for note in result["valid_error_examples"] + result["bad_notes"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="soak duration (default: 20)")
    parser.add_argument("--clients", type=int, default=8, help="valid closed-loop clients (default: 8)")
    parser.add_argument("--bad-interval-s", type=float, default=0.5, help="pause between bad attempts (default 0.5)")
    parser.add_argument("--max-requests", type=int, default=10**6, help="cap per client (default: 1e6)")
    parser.add_argument("--threads", type=int, default=1, help="server torch threads (default: 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak", help="results path, no suffix")
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60:
        raise SystemExit("--minutes must be in (0, 1440]")

    from benchmarks.synthetic import save_random_checkpoint
    from vlajepa.policies.vla_jepa import VLAJEPAConfig
    from vlajepa.presets import preset_path

    started_wall = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    api_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_random_checkpoint(Path(tmp) / "tiny", VLAJEPAConfig.from_yaml(preset_path("tiny")))
        key_file = Path(tmp) / "api-keys"
        key_file.write_text(f"# soak test key\n{api_key}\n")
        key_file.chmod(0o600)
        server_args = ["serve", "--checkpoint", "<tiny checkpoint>", "--host", HOST, "--port", "0",
                       "--api-key-file", "<key file>", "--threads", str(args.threads),
                       "--max-message-mb", str(MAX_MESSAGE_MB), "--log-level", "WARNING"]  # fmt: skip
        real_args = [str(checkpoint) if a == "<tiny checkpoint>" else str(key_file) if a == "<key file>" else a
                     for a in server_args]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-c", "import sys; from vlajepa.cli import main; sys.exit(main())", *real_args],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            )  # fmt: skip
            try:
                line = server.stdout.readline()
                match = re.search(r" on (ws://127\.0\.0\.1:\d+) ", line)
                if not match:
                    raise RuntimeError(f"the server did not start: {line!r}\n{log_path.read_text()[-3000:]}")
                url = match.group(1)
                t0 = time.monotonic()
                soak = Soak(url, api_key, t0 + args.minutes * 60, t0, args.max_requests)
                rss: list[tuple[float, float]] = []
                stop_sampling = threading.Event()

                def sample_rss() -> None:
                    while not stop_sampling.wait(RSS_SAMPLE_S):
                        mb = _rss_mb(server.pid)
                        if mb is not None:
                            rss.append((time.monotonic() - t0, mb))

                sampler = threading.Thread(target=sample_rss, daemon=True)
                sampler.start()
                threads = [threading.Thread(target=soak.valid_client, args=(i,)) for i in range(args.clients)]
                threads.append(threading.Thread(target=soak.attacker, args=(args.bad_interval_s,)))
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=args.minutes * 60 + 300)
                duration = time.monotonic() - t0
                stop_sampling.set()
                sampler.join(timeout=30)
                rss_end = _rss_mb(server.pid)
                drain_started = time.monotonic()
                server.send_signal(signal.SIGTERM)
                exit_code = server.wait(timeout=60)
                drain_s = round(time.monotonic() - drain_started, 2)
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait(timeout=30)
        server_log = log_path.read_text()

    minutes = max(1, int(duration // 60))
    per_minute = _per_minute(soak.samples, rss, minutes)
    first = next((mb for t, mb in rss if t >= 60), rss[-1][1] if rss else None)
    end = rss_end if rss_end is not None else (rss[-1][1] if rss else None)
    late = np.array([(t / 60, mb) for t, mb in rss if t >= 60])
    slope = float(np.polyfit(late[:, 0], late[:, 1], 1)[0]) if len(late) >= 3 else None
    bad_attempts = sum(sum(c.values()) for c in soak.bad.values())
    bad_accepted = sum(c["accepted"] for c in soak.bad.values())
    bad_unexpected = sum(c["unexpected"] for c in soak.bad.values())
    change_pct = 100 * (end - first) / first if first and end else float("nan")
    result = {
        "benchmark": "policy server soak (loopback)",
        "command": current_command(),
        "git_commit": git_commit() or "unknown",
        "data_revision": "none",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": round(time.monotonic() - started_wall, 1),
        "duration_s": round(duration, 1),
        "clients": args.clients,
        "bad_interval_s": args.bad_interval_s,
        "valid_requests": len(soak.samples),
        "valid_errors": len(soak.valid_errors),
        "client_connections": soak.connections,
        "bad_attempts": bad_attempts,
        "bad_accepted": bad_accepted,
        "bad_unexpected": bad_unexpected,
        "bad_by_kind": {kind: dict(counts) for kind, counts in soak.bad.items()},
        "rss_mb_first_minute": round(first, 1) if first else None,
        "rss_mb_end": round(end, 1) if end else None,
        "rss_change_pct": round(change_pct, 2),
        "rss_slope_mb_per_min": round(slope, 3) if slope is not None else None,
        "throughput_rps": round(len(soak.samples) / duration, 2),
        "latency_p50_ms": round(float(np.percentile([s[1] for s in soak.samples], 50)) * 1e3, 2),
        "latency_p99_ms": round(float(np.percentile([s[1] for s in soak.samples], 99)) * 1e3, 2),
        "per_minute": per_minute,
        "rss_samples": [[round(t, 1), round(mb, 1)] for t, mb in rss],
        "server_exit_code": exit_code,
        "drain_s": drain_s,
        "server_tracebacks": server_log.count("Traceback"),
        "server_command": "vlajepa " + " ".join(server_args),
        "model": "tiny randomly initialized VLAJEPAPolicy (tiny preset), 96x96 image + 4-D state + prompt",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "valid_error_examples": soak.valid_errors[:10],
        "bad_notes": soak.bad_notes,
    }
    result["checks"] = {
        "at_least_20_minutes": duration >= 20 * 60,
        "no_valid_errors": not soak.valid_errors,
        "every_bad_attempt_refused": bad_accepted == 0 and bad_unexpected == 0 and bad_attempts > 0,
        "rss_end_within_10pct_of_minute_1": abs(change_pct) <= 10,
        "server_exited_0_after_sigterm": exit_code == 0,
        "no_tracebacks_in_server_log": result["server_tracebacks"] == 0,
    }
    write_report_files(args.out, result, _markdown(result))
    print(_markdown(result))
    print(f"wrote {with_extension(args.out, '.json')} and {with_extension(args.out, '.md')}")


if __name__ == "__main__":
    main()
