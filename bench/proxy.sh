#!/usr/bin/env bash
# The proxy's own cost. One fixed chat completion served by a static nginx upstream,
# reached three ways with the same request body and wrk:
#   (a) directly, (b) through nginx proxy_pass with upstream keepalive (a proxy that
#   does nothing), (c) through `strata proxy` with a real key (verification, policy,
#   SigV4 as the project's assumed role, normalisation, metering).
# Plain and streamed, at 1 and 64 connections. Prints req/s, p50/p99, the latency strata
# adds at concurrency 1 (c - a), its throughput against nginx at 64 (c / b), and its
# peak RSS; then the RSS with 1,000 concurrent streams (held open by the fake Mantle,
# one event per second) on a warm proxy and on a cold one (STREAM_STARTS), and the cost
# of verifying a key seen before.
# Then (EXTRA, default "limits responses") at 64 connections: the same chat with the
# project's rate limits and budget enforced — counted in the proxy's memory, then in
# Redis (STRATA_BENCH_REDIS_URL, default the machine's; one is started when none
# answers) — against no limits; and the Responses API's create path against chat.
#
#   bench/proxy.sh
#   DURATION=30s bench/proxy.sh
#   ROUNDS=5 bench/proxy.sh   # nginx and strata alternated five times at c = 64 (default 3)
#   MODES=plain CONNS=64 STREAMS=0 PERF=1 bench/proxy.sh   # one figure, with a CPU profile
#   BARE="pool local pinned" MODES=plain CONNS=64 STREAMS=0 EXTRA= bench/proxy.sh
#     (also the floor of a tokio + hyper proxy that only forwards: proxy/examples/bare_proxy.rs)
#   ALLOCATOR=glibc PROXY_WRAPPER="heaptrack -o $PWD/target/heaptrack-proxy" bench/proxy.sh
#     (a heap profile: heaptrack sees glibc's malloc, not mimalloc)
#   PROXY_BIN=/elsewhere/strata bench/proxy.sh
#     (that binary as the proxy instead of building one: to compare two builds in one
#     session; STRATA_BIN likewise for the control plane. A binary must be named
#     `strata`: the proxy is stopped by that name under a wrapper.)
#
# Needs: wrk and nginx (installed with apt-get when missing), .venv with moto and the
# openai SDK's httpx (scripts/test makes it). Builds strata in the production profile
# (~20 min from scratch on 2 cores), the helpers in release. SQLite for the
# control plane (it is not on the request path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
STREAMS=${STREAMS:-1000}
# Narrower runs while working on one figure, e.g. MODES=plain CONNS=64 STREAMS=0.
MODES=${MODES-plain stream}
CONNS=${CONNS-1 64}
ROUNDS=${ROUNDS:-3}

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
cargo build --release --quiet -p strata-proxy --example verify_cached
[[ -z "${BARE:-}" ]] || cargo build --release --quiet -p strata-proxy --example bare_proxy

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
moto_port=$(free_port); mantle_port=$(free_port); control_port=$(free_port)
static_port=$(free_port); pass_port=$(free_port); proxy_port=$(free_port); bare_port=$(free_port)
pids=""
cleanup() {
  for p in $pids ${proxy_pid:-} ${bare_pid:-}; do kill "$p" 2>/dev/null || true; done
  for conf in static pass; do [[ -f "$work/$conf.pid" ]] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
wait_http() { for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true STRATA_LOG=warn
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 & pids="$pids $!"
target/release/fake-mantle "127.0.0.1:$mantle_port" >"$work/mantle.log" 2>&1 & pids="$pids $!"
wait_http "$AWS_ENDPOINT_URL/moto-api/"

# The control plane reconciles one project onto moto and the fake Mantle (so it has a
# Mantle id and a role to assume) and issues a key.
( cd "$work" && STRATA_SERVE_PROXY=false STRATA_LISTEN="127.0.0.1:$control_port" \
    STRATA_MANTLE_URL="http://127.0.0.1:$mantle_port/{region}/v1" STRATA_COST_ALLOCATION_TAGS= \
    STRATA_RECONCILE_POLL_MS=100 exec "$STRATA_BIN" serve >serve.log 2>&1 ) & pids="$pids $!"
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
resp='{"id":"resp_bench","object":"response","created_at":1764000000,"status":"completed","model":"openai.gpt-oss-20b","output":[{"id":"msg_bench","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello.","annotations":[]}]}],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"usage":{"input_tokens":14,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":2,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":16}}'
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
hwm() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

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
proxy_pids() { case $1 in direct) ;; nginx) pgrep -P "$(cat "$work/pass.pid")" ;; bare-*) echo "$bare_pid" ;; *) echo "$proxy_pid" ;; esac; }
# The machine's CPU counters (/proc/stat): busy, idle and stolen ticks, all cores.
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6, $9}' /proc/stat; }
declare -A RPS P50 P99 CPU SYS IDLE
load() { # name mode connections url
  local name=$1 mode=$2 conns=$3 url=$4 threads=2 out before sys_before requests pids machine_before
  ((conns == 1)) && threads=1
  pids=$(proxy_pids "$name")
  before=$(ticks all $pids); sys_before=$(ticks sys $pids); machine_before=$(machine_ticks)
  out=$(BENCH_KEY=$key BENCH_STREAM=$([[ $mode == stream ]] && echo 1 || echo 0) \
        wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -s "bench/${SCRIPT:-chat}.lua" "$url")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU[$name.$mode.$conns]=$(awk -v t="$(($(ticks all $pids) - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  SYS[$name.$mode.$conns]=$(awk -v t="$(($(ticks sys $pids) - sys_before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')
  # Idle and stolen (by the hypervisor) shares of the machine's time during the load:
  # a path that leaves cores idle is bound by latency, not by CPU.
  IDLE[$name.$mode.$conns]=$(awk -v b="$machine_before" -v a="$(machine_ticks)" \
    'BEGIN {split(b, x, " "); split(a, y, " "); t = (y[1]-x[1]) + (y[2]-x[2]) + (y[3]-x[3]); if (!t) t = 1;
            printf "%.0f / %.0f", 100 * (y[2]-x[2]) / t, 100 * (y[3]-x[3]) / t}')
  if ! grep -q 'non-2xx/3xx responses: 0' <<<"$out"; then echo "$out" >&2; echo "errors on $name $mode c=$conns" >&2; exit 1; fi
  RPS[$name.$mode.$conns]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  P50[$name.$mode.$conns]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  P99[$name.$mode.$conns]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  printf '| %-12s | %-6s | %3s | %8s | %8s | %8s | %9s | %8s | %11s |\n' "$name" "$mode" "$conns" "${RPS[$name.$mode.$conns]}" \
    "${P50[$name.$mode.$conns]}" "${P99[$name.$mode.$conns]}" "${CPU[$name.$mode.$conns]}" "${SYS[$name.$mode.$conns]}" \
    "${IDLE[$name.$mode.$conns]}"
}

echo
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d), DURATION=$DURATION"
echo
echo "(proxy CPU: CPU time of the proxying processes per request, user + system, in µs; of it in the kernel."
echo " idle/steal: the machine's idle time and the time the hypervisor took, % of both cores during the load)"
echo
header() {
  echo "| path         | mode   |   c |    req/s | p50 (ms) | p99 (ms) | proxy CPU | of it sys | idle/steal % |"
  echo "| ---          | ---    | --- |      --- |      --- |      --- |       --- |       --- |          --- |"
}
header
declare -A RSS RATIOS
for mode in $MODES; do
  start_proxy "http://127.0.0.1:$static_port/$mode/{region}/v1"
  # The first request pays for AssumeRole and the JWKS fetch; not part of the figures.
  curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"model\":\"openai.gpt-oss-20b\",\"stream\":$([[ $mode == stream ]] && echo true || echo false),\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
    "http://127.0.0.1:$proxy_port/v1/chat/completions"
  for conns in $CONNS; do
    load direct "$mode" "$conns" "http://127.0.0.1:$static_port/$mode/us-east-1/v1/chat/completions"
    # Under load the ratio moves by several points from one 10 s run to the next
    # (the machine is shared with wrk and the upstream): ROUNDS alternated runs of
    # nginx and strata, and their median ratio.
    rounds=1; ((conns > 1)) && rounds=$ROUNDS
    for round in $(seq 1 "$rounds"); do
    load nginx "$mode" "$conns" "http://127.0.0.1:$pass_port/$mode/us-east-1/v1/chat/completions"
    # PERF=1: a CPU profile of the proxy under load, in target/perf-proxy-<mode>-<c>.data.
    # PERF=stat: context switches, migrations and CPU of the proxy, printed.
    if [[ "${PERF:-}" == stat && $round == 1 ]]; then
      for who in nginx strata; do
        [[ $who == nginx ]] && sleep 0.5
        perf stat -e task-clock,context-switches,cpu-migrations,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_getrandom \
          -p "$(proxy_pids $who | paste -sd,)" -- sleep 4 2>&1 | sed -n '/Performance/,$p' | sed "s/^/[$who] /" >&2 &
        [[ $who == nginx ]] && { load nginx "$mode" "$conns" "http://127.0.0.1:$pass_port/$mode/us-east-1/v1/chat/completions"; wait $!; }
      done
      perf_pid=$!
    elif [[ -n "${PERF:-}" && "${PERF:-}" != stat && $round == 1 ]]; then
      perf record -q -F 499 -g -p "$proxy_pid" -o "$ROOT/target/perf-proxy-$mode-$conns.data" -- sleep 5 2>/dev/null &
      perf_pid=$!
    fi
    load strata "$mode" "$conns" "http://127.0.0.1:$proxy_port/v1/chat/completions"
    if [[ -n "${perf_pid:-}" ]]; then wait "$perf_pid" 2>/dev/null || true; perf_pid=""; fi
    RATIOS[$mode.$conns]+=" $(awk -v c="${RPS[strata.$mode.$conns]}" -v b="${RPS[nginx.$mode.$conns]}" 'BEGIN {printf "%.0f", 100 * c / b}')"
    done
    for bare in ${BARE:-}; do
      target/release/examples/bare_proxy "127.0.0.1:$bare_port" "127.0.0.1:$static_port" "/$mode/us-east-1" "$bare" & bare_pid=$!
      wait_http "http://127.0.0.1:$bare_port/v1/chat/completions"
      load "bare-$bare" "$mode" "$conns" "http://127.0.0.1:$bare_port/v1/chat/completions"
      kill "$bare_pid"; wait "$bare_pid" 2>/dev/null || true; bare_pid=""
    done
  done
  RSS[$mode]=$(hwm "$proxy_pid")
  stop_proxy
done

echo
for mode in $MODES; do
  if [[ -n "${P99[strata.$mode.1]:-}" ]]; then
    added=$(awk -v c="${P99[strata.$mode.1]}" -v a="${P99[direct.$mode.1]}" 'BEGIN {printf "%.3f", c - a}')
    echo "$mode: added p99 at c=1 (strata - direct) ${added} ms (target <= 0.2)"
  fi
  if [[ -n "${RATIOS[$mode.64]:-}" ]]; then
    ratio=$(tr ' ' '\n' <<<"${RATIOS[$mode.64]}" | sed '/^$/d' | sort -n | awk '{r[NR] = $1} END {print (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2}')
    runs=$(tr ' ' '\n' <<<"${RATIOS[$mode.64]}" | sed '/^$/d; s/$/%/' | paste -sd, | sed 's/,/, /g')
    echo "$mode: throughput at c=64 ${ratio}% of nginx proxy_pass, the median of alternated runs ${runs} (target >= 70%)"
  fi
  echo "$mode: strata peak RSS ${RSS[$mode]} MiB"
done

warm() { # path body: the first request pays for AssumeRole, the JWKS and the budget's start
  curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$2" \
    "http://127.0.0.1:$proxy_port/v1/$1"
}
chat_body='{"model":"openai.gpt-oss-20b","messages":[{"role":"user","content":"hi"}]}'

# 1,000 streams held open: the fake Mantle sends one event per second.
if ((STREAMS > 0)); then
for start in ${STREAM_STARTS:-warm cold}; do
start_proxy "http://127.0.0.1:$mantle_port/{region}/v1"
# warm: one request first (the key's JWKS and the project's credentials fetched), as
# for the figures above; cold: the streams are the proxy's first requests, all waiting
# for those two fetches together.
[[ $start == warm ]] && warm chat/completions "$chat_body"
curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"chunk_delay_ms": 1000}' "http://127.0.0.1:$mantle_port/_fake/faults"
echo -n "$start: "
.venv/bin/python bench/streams.py "http://127.0.0.1:$proxy_port" "$key" "$proxy_pid" "$STREAMS"
curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$mantle_port/_fake/faults"
stop_proxy
done
fi

target/release/examples/verify_cached

EXTRA=${EXTRA-limits responses}
[[ -n "$EXTRA" ]] || exit 0
static="http://127.0.0.1:$static_port/plain/{region}/v1"
if [[ $EXTRA == *limits* ]]; then
  redis_url=${STRATA_BENCH_REDIS_URL:-redis://127.0.0.1:6379}
  if [[ "$(redis-cli -u "$redis_url" ping 2>/dev/null)" != PONG ]]; then
    command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
    redis_port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no >"$work/redis.log" 2>&1 & pids="$pids $!"
    redis_url="redis://127.0.0.1:$redis_port"
    for _ in $(seq 1 50); do [[ "$(redis-cli -u "$redis_url" ping 2>/dev/null)" == PONG ]] && break; sleep 0.1; done
  fi
  echo
  echo "rate limits and budget at c=64 (limits far above the load, so every request is checked and admitted):"
  echo
  header
  start_proxy "$static"; warm chat/completions "$chat_body"
  load no-limits plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
  stop_proxy
  curl -sf -o /dev/null -X PATCH -H "Authorization: Bearer $(cat "$work/strata-admin.token")" -H 'Content-Type: application/json' \
    -d '{"rate_limits":{"rpm":1000000000,"tpm":1000000000},"monthly_budget_usd":1000000000}' \
    "http://127.0.0.1:$control_port/api/v1/projects/$project_id"
  sleep 1
  start_proxy "$static"; warm chat/completions "$chat_body"
  load limits-memory plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
  stop_proxy
  start_proxy "$static" STRATA_REDIS_URL="$redis_url" STRATA_REDIS_KEY_PREFIX="strata-bench-$$"; warm chat/completions "$chat_body"
  load limits-redis plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
  RSS[redis]=$(hwm "$proxy_pid")
  stop_proxy
  redis-cli -u "$redis_url" --scan --pattern "strata-bench-$$:*" | xargs -r redis-cli -u "$redis_url" del >/dev/null
  echo
  awk -v n="${RPS[no-limits.plain.64]}" -v m="${RPS[limits-memory.plain.64]}" -v r="${RPS[limits-redis.plain.64]}" \
      -v pn="${P99[no-limits.plain.64]}" -v pm="${P99[limits-memory.plain.64]}" -v pr="${P99[limits-redis.plain.64]}" \
    'BEGIN {printf "limits in memory: %.0f%% of the no-limits throughput (p99 %+.3f ms); in Redis: %.0f%% (p99 %+.3f ms)\n", 100*m/n, pm-pn, 100*r/n, pr-pn}'
fi
if [[ $EXTRA == *responses* ]]; then
  curl -sf -o /dev/null -X PATCH -H "Authorization: Bearer $(cat "$work/strata-admin.token")" -H 'Content-Type: application/json' \
    -d '{"data_retention":"standard","rate_limits":{"rpm":null,"tpm":null},"monthly_budget_usd":null}' \
    "http://127.0.0.1:$control_port/api/v1/projects/$project_id"
  sleep 1
  echo
  echo "the Responses API's create against chat (no limits; each create also records the response's owner with the control plane):"
  echo
  header
  start_proxy "$static"
  warm chat/completions "$chat_body"; warm responses '{"model":"openai.gpt-oss-20b","input":"hi"}'
  for conns in 1 64; do
    load chat plain "$conns" "http://127.0.0.1:$proxy_port/v1/chat/completions"
    SCRIPT=responses load responses plain "$conns" "http://127.0.0.1:$proxy_port/v1/responses"
  done
  stop_proxy
  echo
  awk -v c="${RPS[chat.plain.64]}" -v r="${RPS[responses.plain.64]}" -v c1="${P50[chat.plain.1]}" -v r1="${P50[responses.plain.1]}" \
    'BEGIN {printf "responses: %.0f%% of chat throughput at c=64; p50 at c=1 %+.3f ms\n", 100*r/c, r1-c1}'
fi
