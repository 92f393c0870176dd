#!/usr/bin/env bash
# The reconciler at scale: N projects (default 10,000) against the moto server (IAM,
# STS, tagging) and the fake Mantle, on Postgres. Prints, from `strata reconcile`:
#   1. converge from empty: wall time, AWS calls, calls per project;
#   2. a steady-state pass with no drift: mutating calls (must be 0), reads per
#      project, wall time.
#
#   bench/reconcile.sh              # 10,000 projects
#   bench/reconcile.sh 1000         # fewer
#   CONCURRENCY=32 bench/reconcile.sh
#
# Needs: Postgres (STRATA_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres),
# .venv with moto (scripts/test makes it). Builds release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
CONCURRENCY=${CONCURRENCY:-16}
ADMIN_URL=${STRATA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

psql "$ADMIN_URL" -XAtqc 'select 1' >/dev/null || { echo "Postgres is not reachable at $ADMIN_URL" >&2; exit 1; }
[[ -x .venv/bin/moto_server ]] || { python3 -m venv .venv && .venv/bin/pip install -q -r scripts/requirements-test.txt; }
cargo build --release --quiet --bin strata && cargo build --release --quiet -p strata-testkit --bin fake-mantle

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
db="strata_bench_$$"
psql "$ADMIN_URL" -Xqc "create database $db" >/dev/null
work=$(mktemp -d)
moto_port=$(free_port); mantle_port=$(free_port); port=$(free_port)
cleanup() {
  for p in ${pids:-}; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$ADMIN_URL" -Xqc "drop database if exists $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids="$!"
target/release/fake-mantle "127.0.0.1:$mantle_port" >"$work/mantle.log" 2>&1 & pids="$pids $!"
export STRATA_DATABASE_URL="${ADMIN_URL%/*}/$db"
export STRATA_MANTLE_URL="http://127.0.0.1:$mantle_port/{region}/v1"
export STRATA_COST_ALLOCATION_TAGS="" STRATA_RECONCILE_CONCURRENCY=$CONCURRENCY STRATA_LOG=${STRATA_LOG:-warn}
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 1 100); do curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null && break; sleep 0.2; done

# The projects, created through the API with the loop off.
STRATA_RECONCILER=false STRATA_SERVE_PROXY=false STRATA_LISTEN="127.0.0.1:$port" STRATA_ADMIN_TOKEN_FILE="$work/admin.token" STRATA_KEY_ENCRYPTION_KEY_FILE="$work/secret.key" STRATA_PROXY_TOKEN_FILE="$work/proxy.token" \
  target/release/strata serve >"$work/serve.out" 2>"$work/serve.log" & serve_pid=$!; pids="$pids $serve_pid"
for _ in $(seq 1 100); do [[ -s "$work/admin.token" ]] && break; sleep 0.1; done
echo "creating $N projects"
python3 - "http://127.0.0.1:$port" "$(cat "$work/admin.token")" "$N" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def create(i):
    body = {"name": f"bench-{i}", "environment": ["dev", "staging", "prod"][i % 3], "team": "bench",
            "region": "us-east-1", "allowed_models": ["openai.gpt-oss-120b", "openai.gpt-oss-20b"],
            "tags": {"CostCenter": f"cc-{i % 50}", "Team": "bench"}}
    req = urllib.request.Request(f"{base}/api/v1/projects", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201
with ThreadPoolExecutor(16) as pool:
    list(pool.map(create, range(n)))
PY
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true

run() {
  local label=$1 start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/rss" target/release/strata reconcile >"$work/$label.out" 2>"$work/$label.err" || true
  end=$(date +%s.%N)
  python3 - "$label" "$N" "$start" "$end" "$work/$label.out" "$(tail -1 "$work/rss")" <<'PY'
import re, sys
label, n, start, end, out, rss = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), open(sys.argv[5]).read(), int(sys.argv[6])
summary = [l for l in out.splitlines() if "project(s):" in l]
calls = re.search(r"AWS calls: (\d+) \((\d+) mutating, (\d+) read\)", out)
total, mutating, reads = (int(calls.group(i)) for i in (1, 2, 3)) if calls else (0, 0, 0)
print(f"{label}: {summary[0] if summary else 'no summary'}")
print(f"  wall {end - start:.1f} s, peak RSS {rss / 1024:.0f} MiB")
print(f"  AWS calls {total} ({mutating} mutating, {reads} read): {total / n:.2f} per project, {reads / n:.2f} reads per project")
reasons = {}
for line in out.splitlines():
    if "  FAILED " in line:
        reason = line.split("  FAILED ", 1)[1][:120]
        reasons[reason] = reasons.get(reason, 0) + 1
for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
    print(f"  failed x{count}: {reason}")
PY
}
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d); N=$N, concurrency $CONCURRENCY"
run "converge from empty"
run "steady state (no drift)"
echo "command: bench/reconcile.sh $N  (CONCURRENCY=$CONCURRENCY)"
