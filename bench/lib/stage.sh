# Sourced by the benchmarks of the proxy (proxy.sh, peers.sh): builds strata, starts
# moto, the fake Mantle, a control plane holding one reconciled project and its key, a
# static nginx upstream answering every path with one fixed chat completion (plain,
# streamed, Responses) and nginx proxy_pass in front of it; defines start_proxy /
# stop_proxy, load (one wrk run, a table row) and header. Expects ROOT and DURATION.

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
[[ -x .venv/bin/moto_server ]] || { python3 -m venv .venv && .venv/bin/pip install -q -r scripts/requirements-test.txt; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# strata as deployed: the production profile (release + whole-program optimisation);
# the proxy as its own image has it, without the control plane's code (deploy/Dockerfile
# `--target proxy`). ALLOCATOR=glibc: that proxy without mimalloc (for comparison, or
# for heaptrack). STRATA_BIN / PROXY_BIN: given binaries instead (to compare builds).
if [[ -z "${PROXY_BIN:-}" ]]; then
  cargo build --profile production --quiet --bin strata --no-default-features \
    $([[ ${ALLOCATOR:-} == glibc ]] || echo --features mimalloc)
  mkdir -p target/production/proxy-only && cp target/production/strata target/production/proxy-only/strata
fi
PROXY_BIN=$(realpath "${PROXY_BIN:-target/production/proxy-only/strata}")
[[ -n "${STRATA_BIN:-}" ]] || cargo build --profile production --quiet --bin strata
STRATA_BIN=$(realpath "${STRATA_BIN:-target/production/strata}")
cargo build --release --quiet -p strata-testkit --bin fake-mantle

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
moto_port=$(free_port); mantle_port=$(free_port); control_port=$(free_port)
static_port=$(free_port); pass_port=$(free_port); proxy_port=$(free_port); bare_port=$(free_port)
pids=""
cleanup() {
  for p in $pids ${proxy_pid:-} ${bare_pid:-}; do kill "$p" 2>/dev/null || true; done
  for conf in static pass; do [[ -f "$work/$conf.pid" ]] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${KEEP_WORK:-}" ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
wait_http() { for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true STRATA_LOG=warn
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids="$pids $!"
target/release/fake-mantle "127.0.0.1:$mantle_port" >"$work/mantle.log" 2>&1 & pids="$pids $!"
wait_http "$AWS_ENDPOINT_URL/moto-api/"

# The control plane's database: SQLite in $work, or with BENCH_DATABASE=postgres a
# fresh database on the machine's Postgres (BENCH_POSTGRES_URL), dropped at the end.
database_url="sqlite://$work/strata.db?mode=rwc"
if [[ ${BENCH_DATABASE:-sqlite} == postgres ]]; then
  postgres=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
  bench_db="strata_bench_$$"
  psql -q "$postgres/postgres" -c "CREATE DATABASE $bench_db" \
    || { echo "BENCH_DATABASE=postgres: no Postgres at $postgres (set BENCH_POSTGRES_URL)" >&2; exit 1; }
  database_url="$postgres/$bench_db"
  drop_bench_db() { psql -q "$postgres/postgres" -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" || true; }
  trap 'cleanup; drop_bench_db' EXIT
fi

# The control plane reconciles one project onto moto and the fake Mantle (so it has a
# Mantle id and a role to assume) and issues a key.
( cd "$work" && STRATA_DATABASE_URL="$database_url" STRATA_SERVE_PROXY=false STRATA_LISTEN="127.0.0.1:$control_port" \
    STRATA_MANTLE_URL="http://127.0.0.1:$mantle_port/{region}/v1" STRATA_COST_ALLOCATION_TAGS= \
    STRATA_RECONCILE_POLL_MS=100 exec "$STRATA_BIN" serve >serve.log 2>&1 ) & pids="$pids $!"
control_pid=$!
wait_http "http://127.0.0.1:$control_port/readyz"
for _ in $(seq 1 100); do [[ -s "$work/strata-admin.token" ]] && break; sleep 0.1; done
key=$(.venv/bin/python - "http://127.0.0.1:$control_port" "$(cat "$work/strata-admin.token")" <<'PY'
import json, sys, time, urllib.request
base, token = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    req = urllib.request.Request(base + "/api/v1" + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    return json.load(urllib.request.urlopen(req))
p = call("POST", "/projects", {"name": "bench", "environment": "dev", "team": "bench",
                               "region": "us-east-1", "allowed_models": ["openai.gpt-oss-20b"]})
for _ in range(200):
    if (call("GET", f"/projects/{p['id']}").get("aws") or {}).get("mantle_project_id"):
        break
    time.sleep(0.1)
else:
    sys.exit("the project was never reconciled")
print(p["id"], call("POST", f"/projects/{p['id']}/keys", {"name": "bench"})["secret"])
PY
)
read -r project_id key <<<"$key"

plain='{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"openai.gpt-oss-20b","choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}}'
chunk() { printf '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"openai.gpt-oss-20b","choices":%s,"usage":%s}' "$1" "$2"; }
sse="data: $(chunk '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]' null)

data: $(chunk '[{"index":0,"delta":{"content":"Hello."},"finish_reason":null}]' null)

data: $(chunk '[{"index":0,"delta":{},"finish_reason":"stop"}]' null)

data: $(chunk '[]' '{"prompt_tokens":14,"completion_tokens":2,"total_tokens":16}')

data: [DONE]

"
# Every create gets its own id ($request_id is nginx's), as Mantle's would.
resp='{"id":"resp_$request_id","object":"response","created_at":1764000000,"status":"completed","model":"openai.gpt-oss-20b","output":[{"id":"msg_bench","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello.","annotations":[]}]}],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"usage":{"input_tokens":14,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":16}}'
cat >"$work/static.conf" <<NGINX
worker_processes auto;
pid $work/static.pid;
error_log $work/static-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$static_port;
    location ~ ^/plain/[^/]+/v1/responses\$ { default_type application/json; return 200 '$resp'; }
    location /plain/ { default_type application/json; return 200 '$plain'; }
    location /stream/ { default_type text/event-stream; return 200 '$sse'; }
  }
}
NGINX
cat >"$work/pass.conf" <<NGINX
worker_processes auto;
pid $work/pass.pid;
error_log $work/pass-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream static { server 127.0.0.1:$static_port; keepalive 128; }
  server {
    listen 127.0.0.1:$pass_port;
    location / {
      proxy_pass http://static;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -c "$work/static.conf" -p "$work" -g 'daemon on;'
nginx -c "$work/pass.conf" -p "$work" -g 'daemon on;'

start_proxy() { # mantle-url [VAR=value …]
  ( cd "$work" && export "${@:2}" STRATA_PROXY_LISTEN="127.0.0.1:$proxy_port" STRATA_CONTROL_PLANE_URL="http://127.0.0.1:$control_port" \
      STRATA_MANTLE_URL="$1" && exec ${PROXY_WRAPPER:-} "$PROXY_BIN" proxy >>proxy.log 2>&1 ) &
  proxy_pid=$!
  wait_http "http://127.0.0.1:$proxy_port/readyz"
}
stop_proxy() {
  # Under a wrapper that runs the proxy as its child (heaptrack), only strata itself
  # gets the SIGTERM: heaptrack's own children (its interpreter, zstd) must finish
  # writing the profile.
  pkill -TERM -P "$proxy_pid" -x strata 2>/dev/null || kill -TERM "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""
}
# hwm PID…: the peak RSS of the processes, summed, in MiB (pages that forked workers
# share are counted once per process).
hwm() {
  local p
  for p in "$@"; do awk '/VmHWM/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {printf "%.1f", s / 1024}'
}

# wrk's latency to milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' <<<"$1"; }
# ticks all|sys PID…: CPU time (clock ticks) used so far by the processes, all or system.
ticks() {
  local which=$1 t=0 p; shift
  for p in "$@"; do
    t=$((t + $(awk -v w="$which" '{print w == "sys" ? $15 : $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# The processes doing the proxying on a path: nothing, nginx's workers, or strata.
# PEER_PIDS[name]: the processes of another proxy loaded under that name (peers.sh).
declare -A PEER_PIDS
proxy_pids() {
  if [[ -n "${PEER_PIDS[$1]:-}" ]]; then echo "${PEER_PIDS[$1]}"; return; fi
  case $1 in direct) ;; nginx) pgrep -P "$(cat "$work/pass.pid")" ;; bare-*) echo "$bare_pid" ;; *) echo "$proxy_pid" ;; esac
}
# The control plane and, with BENCH_DATABASE=postgres, the machine's Postgres processes.
store_pids() { echo "$control_pid"; [[ ${BENCH_DATABASE:-sqlite} == postgres ]] && pgrep -x postgres || true; }
# The machine's CPU counters (/proc/stat): busy, idle and stolen ticks, all cores.
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6, $9}' /proc/stat; }
declare -A RPS P50 P99 CPU SYS IDLE MACHINE REQUESTS
load() { # name mode connections url  (a table row; the figures in RPS, P50, P99 …)
  local name=$1 mode=$2 conns=$3 url=$4 threads=2 out before sys_before requests pids machine_before machine_after
  ((conns == 1)) && threads=1
  pids=$(proxy_pids "$name")
  before=$(ticks all $pids); sys_before=$(ticks sys $pids); machine_before=$(machine_ticks)
  # LOAD_KEY: another bearer token than strata's key; BENCH_HEADERS (read by chat.lua):
  # more headers, "Name: value|Name: value".
  out=$(BENCH_KEY=${LOAD_KEY:-$key} BENCH_STREAM=$([[ $mode == stream ]] && echo 1 || echo 0) \
        wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -s "bench/${SCRIPT:-chat}.lua" "$url")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU[$name.$mode.$conns]=$(awk -v t="$(($(ticks all $pids) - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  SYS[$name.$mode.$conns]=$(awk -v t="$(($(ticks sys $pids) - sys_before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  # Idle and stolen (by the hypervisor) shares of the machine's time during the load:
  # a path that leaves cores idle is bound by latency, not by CPU.
  machine_after=$(machine_ticks)
  IDLE[$name.$mode.$conns]=$(awk -v b="$machine_before" -v a="$machine_after" \
    'BEGIN {split(b, x, " "); split(a, y, " "); t = (y[1]-x[1]) + (y[2]-x[2]) + (y[3]-x[3]); if (!t) t = 1;
            printf "%.0f / %.0f", 100 * (y[2]-x[2]) / t, 100 * (y[3]-x[3]) / t}')
  # The machine's busy CPU per request, every process's (wrk and the upstream too), µs.
  MACHINE[$name.$mode.$conns]=$(awk -v b="$machine_before" -v a="$machine_after" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {split(b, x, " "); split(a, y, " "); printf "%.1f", n ? (y[1]-x[1]) / hz * 1e6 / n : 0}')
  if ! grep -q 'non-2xx/3xx responses: 0' <<<"$out"; then echo "$out" >&2; echo "errors on $name $mode c=$conns" >&2; exit 1; fi
  RPS[$name.$mode.$conns]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  REQUESTS[$name.$mode.$conns]=$requests
  P50[$name.$mode.$conns]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  P99[$name.$mode.$conns]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  printf '| %-12s | %-6s | %3s | %8s | %8s | %8s | %9s | %8s | %11s |\n' "$name" "$mode" "$conns" "${RPS[$name.$mode.$conns]}" \
    "${P50[$name.$mode.$conns]}" "${P99[$name.$mode.$conns]}" "${CPU[$name.$mode.$conns]}" "${SYS[$name.$mode.$conns]}" \
    "${IDLE[$name.$mode.$conns]}"
}


header() {
  echo "| path         | mode   |   c |    req/s | p50 (ms) | p99 (ms) | proxy CPU | of it sys | idle/steal % |"
  echo "| ---          | ---    | --- |      --- |      --- |      --- |       --- |       --- |          --- |"
}

# median: the median of the numbers on stdin (space or newline separated).
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{r[NR] = $1} END {print (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2}'; }
