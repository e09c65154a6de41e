"""Profile the gateway's relay path: ``spout serve``'s CPU per relayed token, and where it goes.

Runs bench/gateway.py's set-up (bench/server.py as the paced upstream, ``spout serve`` in
front, an aiohttp client) several rounds, and reports the gateway process's CPU per text delta
delivered for each round and their median. With ``--src DIR`` the gateway runs another
checkout's code (``PYTHONPATH=DIR``), so old and new code can be measured in turns, under the
same load; ``--py-spy FILE`` records the gateway with py-spy (``--format raw``, collapsed
stacks, for ``--summary``) during the last round.

Usage: ``python bench/profile_gateway.py [--streams 100] [--chunks 200] [--rounds 3]
[--src /tmp/old/src] [--py-spy out.txt] [--spy-rate 200]``;
``python bench/profile_gateway.py --summary out.txt`` prints the self and total share of the
hottest functions of a recorded profile.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent

# Its own copies of the few lines of set-up it needs (bench/gateway.py changes under other
# work): the paced upstream, ``spout serve`` with one process, and a client counting deltas.


def _cpu_seconds(pid: int) -> float:
    """The CPU time of ``pid`` and of its running children (``--workers``' processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(_cpu_seconds(int(child)) for child in children)


def _start(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def start(
    pace: float, src: str | None, workers: int, relay: bool = False
) -> tuple[list[subprocess.Popen[str]], str]:
    """The upstream and the gateway (running ``src``'s code if given; bench/raw_relay.py,
    the floor, with ``relay``); the gateway's URL."""
    env = {**os.environ, "BENCH_UPSTREAM_KEY": "bench"}
    if src:
        env["PYTHONPATH"] = src
    upstream = _start([sys.executable, str(HERE / "server.py"), "--port", "0",
                       "--pace", str(pace)], env)  # fmt: skip
    processes = [upstream]
    try:
        assert upstream.stdout is not None
        upstream_url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}"
        if relay:
            relayed = _start([sys.executable, str(HERE / "raw_relay.py"), "--upstream",
                              upstream_url, "--workers", str(workers)], env)  # fmt: skip
            processes.insert(0, relayed)
            assert relayed.stdout is not None
            return processes, f"http://127.0.0.1:{relayed.stdout.readline().strip()}"
        gateway = _start(
            [sys.executable, "-m", "spout", "serve", "-m", "openai:bench",
             "--base-url", upstream_url + "/v1", "--api-key-env", "BENCH_UPSTREAM_KEY",
             "--port", "0", "--resume-window", "0", "--workers", str(workers)],
            env,
        )  # fmt: skip
        processes.insert(0, gateway)
        assert gateway.stderr is not None
        for line in gateway.stderr:
            found = re.search(r"spout serve: (http://\S+)", line)
            if found:
                # Read on, or its access lines fill the pipe and the gateway blocks on them.
                threading.Thread(target=gateway.stderr.read, daemon=True).start()
                return processes, found.group(1)
        raise RuntimeError("spout serve did not start")
    except BaseException:
        stop(processes)
        raise


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


_TEXT = re.compile(rb'"content":"[^"]')


async def _streams(url: str, streams: int, chunks: int) -> int:
    """Text deltas delivered by ``streams`` concurrent streams (an error raises)."""
    body = orjson.dumps({"model": "bench", "stream": True,
                         "messages": [{"role": "user", "content": f"paced-{chunks}"}]})  # fmt: skip
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            deltas = 0
            async with session.post(url, data=body, headers=headers) as response:
                response.raise_for_status()
                async for line in response.content:
                    # A text delta: content with a character (an upstream's role chunk
                    # may say "content":"", which the relay passes on).
                    if line.startswith(b"data: {") and _TEXT.search(line):
                        deltas += 1
            if deltas != chunks:
                raise RuntimeError(f"{deltas} text deltas of {chunks}")
            return deltas

        return sum(await asyncio.gather(*(one() for _ in range(streams))))


def rounds(
    streams: int,
    chunks: int,
    pace: float,
    count: int,
    src: str | None,
    spy: str | None,
    workers: int,
    relay: bool = False,
    spy_rate: int = 200,
) -> list[float]:
    """CPU µs per relayed token of each of ``count`` rounds, one gateway for all of them."""
    processes, gateway_url = start(pace, src, workers, relay)
    gateway = processes[0]
    url = gateway_url + "/v1/chat/completions"
    results = []
    try:
        # Every worker warmed up (its imports, its first request), as bench/gateway.py does.
        asyncio.run(_streams(url, 20 * workers, 5))
        for number in range(count):
            recorder = None
            if spy and number == count - 1:
                recorder = subprocess.Popen(
                    ["py-spy", "record", "--subprocesses", "--pid", str(gateway.pid), "--format", "raw",
                     "--rate", str(spy_rate), "--output", spy, "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1.0)
            before = _cpu_seconds(gateway.pid)
            deltas = asyncio.run(_streams(url, streams, chunks))
            results.append((_cpu_seconds(gateway.pid) - before) / deltas * 1e6)
            if recorder is not None:
                recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
                recorder.wait(30)
    finally:
        stop(processes)
    return results


def summary(path: str, top: int) -> str:
    """The hottest functions of a py-spy raw (collapsed) profile: self and total %."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [frame.split(" (")[0] + " " + frame.split("/")[-1].rstrip(")")
                  for frame in stack.split(";")]  # fmt: skip
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "self %  function"]
    lines += [f"{n / samples * 100:5.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{n / samples * 100:5.1f}  {name}" for name, n in total.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between chunks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="spout serve --workers")
    parser.add_argument("--src", help="run the gateway from this source directory")
    parser.add_argument("--py-spy", dest="spy", help="record the last round into this file")
    parser.add_argument("--spy-rate", type=int, default=200, help="py-spy's samples a second")
    parser.add_argument("--summary", help="summarise a recorded profile instead")
    parser.add_argument(
        "--relay", action="store_true", help="measure bench/raw_relay.py (the floor) instead"
    )
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.summary, args.top))
        return 0
    results = rounds(
        args.streams,
        args.chunks,
        args.pace,
        args.rounds,
        args.src,
        args.spy,
        args.workers,
        args.relay,
        args.spy_rate,
    )
    load = os.getloadavg()[0]
    print(
        f"{'raw relay' if args.relay else args.src or 'this checkout'}, {args.streams} streams, {args.workers} worker(s): "
        "µs/token "
        + " ".join(f"{value:.1f}" for value in results)
        + f"; median {statistics.median(results):.1f} (load {load:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
