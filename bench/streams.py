"""Holds N concurrent streamed chat completions open through strata proxy and reports
the proxy's peak RSS (VmHWM) and how many streams finished. Used by bench/proxy.sh.

  streams.py BASE_URL KEY PROXY_PID [N]
"""

import asyncio
import sys
import time

try:
    import httpx
except ImportError:  # the openai SDK of this era ships it as httpx2
    import httpx2 as httpx


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def one(client, url, key, done, failures):
    body = {"model": "openai.gpt-oss-20b", "stream": True,
            "messages": [{"role": "user", "content": "one two three four five"}]}
    try:
        async with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            if r.status_code != 200:
                failures.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                return
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done.append(1)
                    return
            failures.append("stream ended without [DONE]")
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        cause = e.__cause__ or e.__context__
        failures.append(f"{type(e).__name__}: {e}" + (f" ({cause!r})" if cause else ""))


async def main():
    base, key, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    before = rss_kib(pid, "VmRSS")
    done, failures = [], []
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        started = time.monotonic()
        tasks = [asyncio.create_task(one(client, f"{base}/v1/chat/completions", key, done, failures)) for _ in range(n)]
        peak_open, peak_split = 0, (0, 0)
        while not all(t.done() for t in tasks):
            rss = rss_kib(pid, "VmRSS")
            if rss > peak_open:
                peak_open, peak_split = rss, (rss_kib(pid, "RssAnon"), rss_kib(pid, "RssFile"))
            await asyncio.sleep(0.1)
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.monotonic() - started
    print(f"{n} concurrent streams: {len(done)} completed in {elapsed:.1f} s; proxy RSS "
          f"{before / 1024:.1f} MiB idle, {peak_open / 1024:.1f} MiB peak sampled, "
          f"VmHWM {rss_kib(pid, 'VmHWM') / 1024:.1f} MiB (at the peak: {peak_split[0] / 1024:.1f} MiB anonymous, "
          f"{peak_split[1] / 1024:.1f} MiB mapped from files)")
    kinds = {}
    for f in failures:
        kinds[f] = kinds.get(f, 0) + 1
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  failed: {count} x {kind}")


asyncio.run(main())
