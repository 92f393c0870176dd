"""Redis's CPU per response owner as the proxies write them, while a bucket's hash grows:
groups of GROUP owners, each group one call of the proxy's script (HSETNX of every
owner, one EXPIREAT) or, for comparison, one HSET of the whole group; Redis's own CPU
(INFO cpu) per owner for each CHUNK owners written, up to TOTAL per kind.

  python3 bench/redis_owners.py [TOTAL=2000000] [GROUP=250] [CHUNK=250000]

Needs redis-cli and the Redis of STRATA_BENCH_REDIS_URL (default the machine's); writes
keys under strata-bench-owners:* and deletes them at the end.
"""

import os
import subprocess
import sys
import uuid

TOTAL = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
GROUP = int(sys.argv[2]) if len(sys.argv) > 2 else 250
CHUNK = int(sys.argv[3]) if len(sys.argv) > 3 else 250_000
URL = os.environ.get("STRATA_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# The proxy's script (proxy/src/registry/shared.rs, SET_OWNERS).
SCRIPT = """for i = 2, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 0"""
OWNER = f"{uuid.uuid4()} openai.gpt-oss-20b"
EXPIRES = "4102444800"


def cli(*args, data=None):
    return subprocess.run(["redis-cli", "-u", URL, *args], input=data, capture_output=True,
                          check=True).stdout.decode()


def cpu():
    seconds = 0.0
    for line in cli("info", "cpu").splitlines():
        name, _, value = line.strip().partition(":")
        if name in ("used_cpu_sys", "used_cpu_user"):
            seconds += float(value)
    return seconds


def command(*args):
    parts = [a.encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def chunk(kind, sha, key):
    out = []
    for _ in range(CHUNK // GROUP):
        pairs = []
        for _ in range(GROUP):
            pairs += ["resp_" + os.urandom(16).hex(), OWNER]
        if kind == "script":
            out.append(command("EVALSHA", sha, "1", key, EXPIRES, *pairs))
        else:
            out.append(command("HSET", key, *pairs))
            out.append(command("EXPIREAT", key, EXPIRES))
    return b"".join(out)


def main():
    sha = cli("script", "load", SCRIPT).strip()
    print(f"Redis CPU per owner, µs, groups of {GROUP}, each figure {CHUNK:,} owners "
          "more into one hash")
    try:
        for kind in ("script", "hset"):
            key = f"strata-bench-owners:{kind}"
            figures = []
            for _ in range(TOTAL // CHUNK):
                data = chunk(kind, sha, key)
                before = cpu()
                cli("--pipe", data=data)
                figures.append((cpu() - before) * 1e6 / CHUNK)
            memory = int(cli("memory", "usage", key, "samples", "0").strip() or 0)
            print(f"{kind:7s} " + " ".join(f"{f:.2f}" for f in figures)
                  + f"; {memory / TOTAL:.0f} bytes per owner")
    finally:
        cli("del", "strata-bench-owners:script", "strata-bench-owners:hset")


if __name__ == "__main__":
    main()
