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
# answers) — against no limits; and the Responses API's create path against chat,
# without Redis and with it (where the owners are written too).
#
#   bench/proxy.sh
#   DURATION=30s bench/proxy.sh
#   ROUNDS=5 bench/proxy.sh   # nginx and strata alternated five times at c = 64 (default 3);
#     chat and create likewise in the Responses section, each round on a proxy without
#     Redis and then on one with it; no limits, limits in memory and in Redis likewise
#     in the limits section
#   MODES=plain CONNS=64 STREAMS=0 PERF=1 bench/proxy.sh   # one figure, with a CPU profile
#   BARE="pool local pinned" MODES=plain CONNS=64 STREAMS=0 EXTRA= bench/proxy.sh
#     (also the floor of a tokio + hyper proxy that only forwards: proxy/examples/bare_proxy.rs)
#   ALLOCATOR=glibc PROXY_WRAPPER="heaptrack -o $PWD/target/heaptrack-proxy" bench/proxy.sh
#     (a heap profile: heaptrack sees glibc's malloc, not mimalloc)
#   BENCH_DATABASE=postgres EXTRA=responses bench/proxy.sh
#     (the control plane on a fresh database of the machine's Postgres instead of
#     SQLite: the Responses owners' inserts are the control plane's share of a create;
#     EXTRA=responses-plain: that section without its Redis half)
#   KEEP_WORK=1 bench/proxy.sh
#     (keeps the run's directory: the proxy's and the control plane's logs)
#   PROXY_BIN=/elsewhere/strata bench/proxy.sh
#     (that binary as the proxy instead of building one: to compare two builds in one
#     session; STRATA_BIN likewise for the control plane. A binary must be named
#     `strata`: the proxy is stopped by that name under a wrapper.)
#
# Needs: wrk and nginx (installed with apt-get when missing), .venv with moto and the
# openai SDK's httpx (scripts/test makes it). Builds strata in the production profile
# (~20 min from scratch on 2 cores), the helpers in release. SQLite for the
# control plane unless BENCH_DATABASE=postgres (it is not on the request path).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
STREAMS=${STREAMS:-1000}
# Narrower runs while working on one figure, e.g. MODES=plain CONNS=64 STREAMS=0.
MODES=${MODES-plain stream}
CONNS=${CONNS-1 64}
ROUNDS=${ROUNDS:-3}

# shellcheck source=bench/lib/stage.sh
source bench/lib/stage.sh
cargo build --release --quiet -p strata-proxy --example verify_cached
[[ -z "${BARE:-}" ]] || cargo build --release --quiet -p strata-proxy --example bare_proxy
echo
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d), DURATION=$DURATION"
echo
echo "(proxy CPU: CPU time of the proxying processes per request, user + system, in µs; of it in the kernel."
echo " idle/steal: the machine's idle time and the time the hypervisor took, % of both cores during the load)"
echo
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
    ratio=$(median <<<"${RATIOS[$mode.64]}")
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
redis_url=${STRATA_BENCH_REDIS_URL:-redis://127.0.0.1:6379}
# The Responses section's proxies: without Redis and with it, or (responses-plain) only
# the first.
responses_proxies="responses responses-redis"
[[ $EXTRA != *responses-plain* ]] || responses_proxies=responses
if [[ ($EXTRA == *limits* || $responses_proxies == *redis*) && "$(redis-cli -u "$redis_url" ping 2>/dev/null)" != PONG ]]; then
  command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no >"$work/redis.log" 2>&1 & pids="$pids $!"
  redis_url="redis://127.0.0.1:$redis_port"
  for _ in $(seq 1 50); do [[ "$(redis-cli -u "$redis_url" ping 2>/dev/null)" == PONG ]] && break; sleep 0.1; done
fi
# Changes the bench project (the JSON of a PATCH) and leaves the proxies' snapshot time
# to follow.
patch_project() {
  curl -sf -o /dev/null -X PATCH -H "Authorization: Bearer $(cat "$work/strata-admin.token")" -H 'Content-Type: application/json' \
    -d "$1" "http://127.0.0.1:$control_port/api/v1/projects/$project_id"
  sleep 1
}
if [[ $EXTRA == *limits* ]]; then
  echo
  echo "rate limits and budget at c=64 (limits far above the load, so every request is checked and admitted),"
  echo "ROUNDS rounds of no limits, limits in memory and limits in Redis:"
  echo
  header
  declare -A LIMIT_RATIOS
  for _ in $(seq 1 "$ROUNDS"); do
    patch_project '{"rate_limits":{"rpm":null,"tpm":null},"monthly_budget_usd":null}'
    start_proxy "$static"; warm chat/completions "$chat_body"
    load no-limits plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
    stop_proxy
    patch_project '{"rate_limits":{"rpm":1000000000,"tpm":1000000000},"monthly_budget_usd":1000000000}'
    start_proxy "$static"; warm chat/completions "$chat_body"
    load limits-memory plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
    stop_proxy
    start_proxy "$static" STRATA_REDIS_URL="$redis_url" STRATA_REDIS_KEY_PREFIX="strata-bench-$$"; warm chat/completions "$chat_body"
    load limits-redis plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
    stop_proxy
    for where in memory redis; do
      LIMIT_RATIOS[$where]+=" $(awk -v n="${RPS[no-limits.plain.64]}" -v l="${RPS[limits-$where.plain.64]}" 'BEGIN {printf "%.0f", 100 * l / n}')"
    done
  done
  redis-cli -u "$redis_url" --scan --pattern "strata-bench-$$:*" | xargs -r redis-cli -u "$redis_url" del >/dev/null
  echo
  for where in memory redis; do
    runs=$(tr ' ' '\n' <<<"${LIMIT_RATIOS[$where]}" | sed '/^$/d; s/$/%/' | paste -sd, | sed 's/,/, /g')
    echo "limits in $where: $(median <<<"${LIMIT_RATIOS[$where]}")% of the no-limits throughput at c=64, the median of $runs$([[ $where == redis ]] && echo ' (target >= 85%)')"
  done
fi
if [[ $EXTRA == *responses* ]]; then
  patch_project '{"data_retention":"standard","rate_limits":{"rpm":null,"tpm":null},"monthly_budget_usd":null}'
  echo
  echo "the Responses API's create against chat (no limits; each create also records the response's owner),"
  echo "alternated ROUNDS times at c=64; store CPU: the control plane's, Postgres's and Redis's CPU per create, µs;"
  echo "held back: creates that waited for the control plane to catch up, % of the creates;"
  echo "owners per Redis call: the creates over the owners' script calls Redis ran meanwhile:"
  echo
  header
  declare -A CREATE_RATIOS STORE_CPU HELD PER_CALL MACHINE_CHAT MACHINE_CREATE PROXY_EXTRA
  # Script calls Redis has run (the owners' writes).
  script_calls() {
    redis-cli -u "$redis_url" info commandstats | tr -d '\r' |
      awk -F'[=,:]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" {n += $3} END {print n + 0}'
  }
  # creates name [env…]: chat then create, once, on a proxy started with env. The two
  # proxies take turns, round by round, so both meet the control plane's table at
  # the same sizes (an insert into a bigger index costs more).
  creates() {
    local name=$1 before calls pids; shift
    # The store: the control plane, Postgres (BENCH_DATABASE=postgres) and Redis.
    pids="$(store_pids) $([[ $name == *redis* ]] && pgrep -x redis-server || true)"
    start_proxy "$static" "$@"
    warm chat/completions "$chat_body"; warm responses '{"model":"openai.gpt-oss-20b","input":"hi"}'
    if [[ $name == responses && -z "${P50[chat.plain.1]:-}" ]]; then
      load chat plain 1 "http://127.0.0.1:$proxy_port/v1/chat/completions"
      SCRIPT=responses load responses plain 1 "http://127.0.0.1:$proxy_port/v1/responses"
    fi
    load "chat-$name" plain 64 "http://127.0.0.1:$proxy_port/v1/chat/completions"
    # shellcheck disable=SC2086
    before=$(ticks all $pids)
    [[ $name != *redis* ]] || calls=$(script_calls)
    SCRIPT=responses load "$name" plain 64 "http://127.0.0.1:$proxy_port/v1/responses"
    [[ $name != *redis* ]] || calls=$(($(script_calls) - calls))
    [[ $name != *redis* ]] || PER_CALL[$name]+=" $(awk -v n="${REQUESTS[$name.plain.64]}" -v c="$calls" 'BEGIN {printf "%.0f", c ? n / c : 0}')"
    # shellcheck disable=SC2086
    STORE_CPU[$name]+=" $(awk -v t="$(($(ticks all $pids) - before))" -v hz="$(getconf CLK_TCK)" \
      -v n="${REQUESTS[$name.plain.64]}" 'BEGIN {printf "%.1f", n ? t / hz * 1e6 / n : 0}')"
    CREATE_RATIOS[$name]+=" $(awk -v c="${RPS[chat-$name.plain.64]}" -v r="${RPS[$name.plain.64]}" 'BEGIN {printf "%.0f", 100 * r / c}')"
    # The machine's CPU per chat and per create, and the proxy's share of the difference.
    MACHINE_CHAT[$name]+=" ${MACHINE[chat-$name.plain.64]}"
    MACHINE_CREATE[$name]+=" ${MACHINE[$name.plain.64]}"
    PROXY_EXTRA[$name]+=" $(awk -v c="${CPU[chat-$name.plain.64]}" -v r="${CPU[$name.plain.64]}" 'BEGIN {printf "%.1f", r - c}')"
    # Creates held back until the control plane caught up, % of the run's creates.
    HELD[$name]+=" $(curl -sf "http://127.0.0.1:$proxy_port/metrics" | awk -v n="${REQUESTS[$name.plain.64]}" \
      '$1 == "strata_proxy_response_creates_held_total" {h = $2} END {printf "%.1f", n ? 100 * h / n : 0}')"
    stop_proxy
  }
  for _ in $(seq 1 "$ROUNDS"); do
    creates responses
    # With Redis the owner is also written there (one script call a group, off the
    # request path).
    [[ $responses_proxies != *redis* ]] ||
      creates responses-redis STRATA_REDIS_URL="$redis_url" STRATA_REDIS_KEY_PREFIX="strata-bench-$$"
  done
  [[ $responses_proxies != *redis* ]] ||
    redis-cli -u "$redis_url" --scan --pattern "strata-bench-$$:*" | xargs -r -n 1000 redis-cli -u "$redis_url" del >/dev/null
  echo
  for name in $responses_proxies; do
    runs=$(tr ' ' '\n' <<<"${CREATE_RATIOS[$name]}" | sed '/^$/d; s/$/%/' | paste -sd, | sed 's/,/, /g')
    echo "$name: $(median <<<"${CREATE_RATIOS[$name]}")% of chat's throughput at c=64, the median of $runs (target >= 80%); store CPU per create ${STORE_CPU[$name]# } µs; held back ${HELD[$name]# } %${PER_CALL[$name]:+; owners per Redis call${PER_CALL[$name]}}"
    # At 80 % of chat's throughput with both cores busy, a create may cost the machine
    # at most 1.25 times a chat's CPU: its extra over chat is the budget the proxy's
    # own extra, the store and the upstream's larger answer share.
    awk -v c="$(median <<<"${MACHINE_CHAT[$name]}")" -v r="$(median <<<"${MACHINE_CREATE[$name]}")" \
        -v p="$(median <<<"${PROXY_EXTRA[$name]}")" -v s="$(median <<<"${STORE_CPU[$name]}")" -v name="$name" \
      'BEGIN {printf "%s: the machine'"'"'s CPU per chat %.1f µs, per create %.1f µs: %+.1f µs (at 80%% of chat a create may add %.1f); of it the proxy %+.1f, the store %.1f, the rest %+.1f (medians)\n", name, c, r, r - c, c / 4, p, s, r - c - p - s}'
  done
  awk -v c1="${P50[chat.plain.1]}" -v r1="${P50[responses.plain.1]}" 'BEGIN {printf "responses: p50 at c=1 %+.3f ms against chat\n", r1-c1}'
fi
