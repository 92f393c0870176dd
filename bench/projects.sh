#!/usr/bin/env bash
# Load test of the control plane on Postgres: GET /api/v1/projects/{id} and
# POST /api/v1/projects with wrk at 32 connections, plus the server's peak RSS.
#
#   bench/projects.sh            # 20 s per endpoint
#   DURATION=60s bench/projects.sh
#   POOL=16 bench/projects.sh    # database pool size (default: 2 x cores, at least 4)
#   STRATA_BIN=/elsewhere/strata bench/projects.sh   # that binary, not a fresh build
#
# Needs: Postgres (STRATA_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres),
# wrk (installed with apt-get when missing). Builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ADMIN_URL=${STRATA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
psql "$ADMIN_URL" -XAtqc 'select 1' >/dev/null || { echo "Postgres is not reachable at $ADMIN_URL" >&2; exit 1; }
[[ -n "${STRATA_BIN:-}" ]] || cargo build --release --quiet --bin strata
STRATA_BIN=$(realpath "${STRATA_BIN:-target/release/strata}")

db="strata_bench_$$"
psql "$ADMIN_URL" -Xqc "create database $db" >/dev/null
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [[ -n "${pid:-}" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  psql "$ADMIN_URL" -Xqc "drop database if exists $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

STRATA_LOG=${STRATA_LOG:-info} STRATA_SERVE_PROXY=false STRATA_LISTEN="127.0.0.1:$port" STRATA_DATABASE_URL="${ADMIN_URL%/*}/$db" \
  STRATA_ADMIN_TOKEN_FILE="$work/admin.token" STRATA_KEY_ENCRYPTION_KEY_FILE="$work/secret.key" STRATA_PROXY_TOKEN_FILE="$work/proxy.token" ${POOL:+STRATA_DATABASE_MAX_CONNECTIONS=$POOL} \
  "$STRATA_BIN" serve >"$work/stdout.log" 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do [[ -s "$work/admin.token" ]] && break; sleep 0.1; done
export STRATA_BENCH_TOKEN=$(cat "$work/admin.token")
base="http://127.0.0.1:$port"
id=$(python3 - "$base" <<'PY'
import json, os, sys, urllib.request
body = json.dumps({"name": "bench-target", "environment": "prod", "team": "bench", "region": "us-east-1",
                   "allowed_models": ["openai.gpt-oss-120b"], "tags": {"CostCenter": "cc-1", "Owner": "bench"}}).encode()
req = urllib.request.Request(sys.argv[1] + "/api/v1/projects", data=body, method="POST",
                             headers={"Authorization": "Bearer " + os.environ["STRATA_BENCH_TOKEN"], "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["id"])
PY
)

echo "== GET /api/v1/projects/{id}  ($CONNECTIONS connections, $THREADS wrk threads, $DURATION)"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $STRATA_BENCH_TOKEN" "$base/api/v1/projects/$id" | tee "$work/get.txt"
echo
echo "== POST /api/v1/projects  ($CONNECTIONS connections, $THREADS wrk threads, $DURATION)"
STRATA_BENCH_RUN=$$ wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post_project.lua "$base" | tee "$work/post.txt"
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo
echo "== summary ($(nproc) cores, $(date -u +%F))"
for f in get post; do
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$f.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/$f.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/$f.txt")
  printf '%-5s %10s req/s   p50 %8s   p99 %8s\n' "$f" "$rps" "$p50" "$p99"
done
echo "server peak RSS: $((rss_kb / 1024)) MiB"
echo "reproduce: DURATION=$DURATION CONNECTIONS=$CONNECTIONS bench/projects.sh"
