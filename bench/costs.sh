#!/usr/bin/env bash
# Render time of an environment's cost page and its CSV on Postgres with 1,000
# projects × 400 days of Cost Explorer figures (plus untagged cost, a 25-value
# CostCenter key and three days of hourly proxy metering), and proof that page views
# make no Cost Explorer call.
#
#   bench/costs.sh                 # 200 sequential requests per URL
#   REQUESTS=500 PROJECTS=2000 bench/costs.sh
#   KEEP_DB=1 REQUESTS=5 bench/costs.sh   # keep the seeded database (to EXPLAIN queries)
#
# Needs: Postgres (STRATA_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres).
# Builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-200}
PROJECTS=${PROJECTS:-1000}
DAYS=${DAYS:-400}
ADMIN_URL=${STRATA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

psql "$ADMIN_URL" -XAtqc 'select 1' >/dev/null || { echo "Postgres is not reachable at $ADMIN_URL" >&2; exit 1; }
cargo build --release --quiet --bin strata

db="strata_bench_costs_$$"
psql "$ADMIN_URL" -Xqc "create database $db" >/dev/null
db_url="${ADMIN_URL%/*}/$db"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [[ -n "${pid:-}" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [[ -n "${KEEP_DB:-}" ]]; then
    echo "kept the database: $db_url"
  else
    psql "$ADMIN_URL" -Xqc "drop database if exists $db" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export STRATA_DATABASE_URL="$db_url" STRATA_KEY_ENCRYPTION_KEY_FILE="$work/secret.key" STRATA_PROXY_TOKEN_FILE="$work/proxy.token"
# No AWS: the cost refresh and the reconciler stay off, so any Cost Explorer call
# during the run would be a page's (and would show in the counters below).
STRATA_LOG=warn STRATA_SERVE_PROXY=false STRATA_RECONCILER=false STRATA_COST_REFRESH_INTERVAL_SECS=0 \
  STRATA_LISTEN="127.0.0.1:$port" STRATA_ADMIN_TOKEN_FILE="$work/admin.token" \
  target/release/strata serve >"$work/stdout.log" 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do [[ -s "$work/admin.token" ]] && break; sleep 0.1; done
base="http://127.0.0.1:$port"

echo "== seeding: $PROJECTS projects through the API, $DAYS days of cost per project in SQL"
STRATA_BENCH_TOKEN=$(cat "$work/admin.token") python3 - "$base" "$PROJECTS" <<'PY'
import json, os, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, count = sys.argv[1], int(sys.argv[2])
def create(i):
    body = {"name": f"svc-{i:04d}", "environment": "prod", "team": f"team-{i % 40}", "region": "us-east-1",
            "allowed_models": ["openai.gpt-oss-120b"], "tags": {"CostCenter": f"cc-{i % 25}"}}
    if i % 3 == 0:
        body["monthly_budget_usd"] = 1000 + i
    req = urllib.request.Request(base + "/api/v1/projects", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + os.environ["STRATA_BENCH_TOKEN"],
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 201
with ThreadPoolExecutor(8) as pool:
    list(pool.map(create, range(count)))
PY
psql "$db_url" -Xq -v ON_ERROR_STOP=1 <<SQL
insert into cost_daily (tag_key, day, environment, tag_value, amount_micros, unit, estimated, fetched_at)
select 'strata:project', d::date, 'prod', p.id::text,
       1000000 + abs(hashtext(p.id::text || d::text)) % 40000000, 'USD', d::date > current_date - 3, now()
from projects p cross join generate_series(current_date - ($DAYS - 1), current_date - 1, interval '1 day') d;
insert into cost_daily (tag_key, day, environment, tag_value, amount_micros, unit, estimated, fetched_at)
select 'strata:project', d::date, 'prod', '', 25000000, 'USD', false, now()
from generate_series(current_date - ($DAYS - 1), current_date - 1, interval '1 day') d;
insert into cost_daily (tag_key, day, environment, tag_value, amount_micros, unit, estimated, fetched_at)
select 'CostCenter', d::date, 'prod', case when g = 0 then '' else 'cc-' || g end,
       5000000 + abs(hashtext(g::text || d::text)) % 900000000, 'USD', false, now()
from generate_series(0, 25) g cross join generate_series(current_date - ($DAYS - 1), current_date - 1, interval '1 day') d;
insert into cost_coverage (tag_key, fetched_from, fetched_to, refreshed_at) values
  ('strata:project', current_date - $DAYS, current_date + 1, now()),
  ('CostCenter', current_date - $DAYS, current_date + 1, now());
insert into usage_minutes (project_id, minute, key_id, model, requests, errors, input_tokens, output_tokens,
                           cached_tokens, cost_micros, latency_ms_sum)
select p.id, date_trunc('hour', now()) - h * interval '1 hour', p.id, 'openai.gpt-oss-120b', 10, 0, 10000, 2000, 0, 3000, 1000
from projects p cross join generate_series(0, 71) h;
insert into usage_daily (project_id, day, requests, cost_micros)
select project_id, (minute at time zone 'UTC')::date, sum(requests), sum(cost_micros)
from usage_minutes group by 1, 2;
-- What autovacuum does on its own after a load (the visibility map lets the cost
-- index answer without the table).
vacuum analyze;
SQL
psql "$db_url" -XAtc "select 'cost rows: ' || count(*) from cost_daily; select 'usage rows: ' || count(*) from usage_minutes"

token=$(target/release/strata token mint --subject bench-finance --role finance --ttl 1h | tail -1)
ce_calls() {
  local db metric
  db=$(psql "$db_url" -XAtc "select count(*) from cost_explorer_calls")
  metric=$(python3 - "$base" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode()
print(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
          if l.startswith("strata_aws_calls_total") and 'service="ce"' in l))
PY
)
  echo "$db database rows, $metric counted calls"
}
before=$(ce_calls)

from=$(date -u -d "-$((DAYS - 1)) days" +%F)
echo
echo "== $REQUESTS sequential requests per URL, one keep-alive connection ($(nproc) cores, $(date -u +%F))"
python3 - "$base" "$token" "$REQUESTS" \
  "/ui/env/prod/costs" \
  "/ui/env/prod/costs?group_by=tag:CostCenter" \
  "/ui/env/prod/costs?from=$from&group_by=tag:CostCenter" \
  "/ui/env/prod/costs.csv?group_by=project" \
  "/ui/env/prod/costs.csv?group_by=day&from=$from" \
  "/ui/env/prod/costs.csv?group_by=project&from=$from" <<'PY'
import http.client, sys, time, urllib.parse
base, token, n, paths = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
host = urllib.parse.urlparse(base).netloc
conn = http.client.HTTPConnection(host)
print(f"{'URL':62} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>10}")
for path in paths:
    times, size = [], 0
    runs = n if "csv" not in path or "from" not in path else max(10, n // 10)
    for i in range(runs + 3):
        start = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": f"strata_session={token}"})
        r = conn.getresponse()
        body = r.read()
        took = (time.perf_counter() - start) * 1000
        assert r.status == 200, (path, r.status, body[:300])
        if i >= 3:  # the first few warm caches and the pool
            times.append(took)
        size = len(body)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"{path[:62]:62} {pick(0.5):8.1f} {pick(0.95):8.1f} {times[-1]:8.1f} {size:10d}  ({len(times)} requests)")
PY
after=$(ce_calls)
echo
echo "Cost Explorer calls before the page views: $before; after: $after"
[[ "$before" == "$after" ]] && echo "page views made no Cost Explorer call" || { echo "page views called Cost Explorer!" >&2; exit 1; }
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "strata serve peak RSS: $((rss_kb / 1024)) MiB"
