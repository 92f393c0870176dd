#!/usr/bin/env bash
# strata beside its peers. LiteLLM's proxy (PyPI) and Portkey's gateway (npm) are put
# in front of the same static nginx upstream as strata and nginx proxy_pass
# (bench/lib/stage.sh), and loaded by wrk with the same chat completion body. Prints
# each one's table rows, then for each: the latency it adds at 1 connection (p50 and
# p99 above the upstream reached directly), its throughput at 64 connections and its
# peak RSS, each also as a ratio to nginx proxy_pass's.
#
#   bench/peers.sh
#   ROUNDS=5 DURATION=30s bench/peers.sh   # the proxies alternated five times at c = 64 (default 3)
#   PROXY_BIN=… STRATA_BIN=… bench/peers.sh   # given strata builds (see proxy.sh)
#
# Each peer as its documentation runs it, with nothing of strata's work to do (no key
# check against a policy, no signing, no metering): LiteLLM's proxy with a config
# naming the upstream as an OpenAI-compatible base URL, its master key as the bearer,
# LITELLM_WORKERS uvicorn workers (default 2, one per core); Portkey's gateway (one
# Node.js process) told the upstream per request by x-portkey-provider and
# x-portkey-custom-host.
#
# Needs: what proxy.sh needs, plus Node.js and npm. The peers are installed at pinned
# versions under target/peers/ (LiteLLM in a venv of its own: its pins are not the
# test tools').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
LITELLM_VERSION=1.108.7
PORTKEY_VERSION=1.15.2
LITELLM_WORKERS=${LITELLM_WORKERS:-2}

peers=$ROOT/target/peers
mkdir -p "$peers"
if ! "$peers/litellm/bin/litellm" --version 2>/dev/null | grep -q "$LITELLM_VERSION"; then
  echo "installing litellm[proxy]==$LITELLM_VERSION into target/peers/litellm"
  python3 -m venv "$peers/litellm"
  "$peers/litellm/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi
portkey=$peers/portkey/node_modules/@portkey-ai/gateway
if ! grep -q "\"version\": \"$PORTKEY_VERSION\"" "$portkey/package.json" 2>/dev/null; then
  command -v npm >/dev/null || { echo "npm is missing: apt-get install -y nodejs npm" >&2; exit 1; }
  echo "installing @portkey-ai/gateway@$PORTKEY_VERSION into target/peers/portkey"
  npm install --silent --no-audit --no-fund --prefix "$peers/portkey" "@portkey-ai/gateway@$PORTKEY_VERSION"
fi

# shellcheck source=bench/lib/stage.sh
source bench/lib/stage.sh
litellm_port=$(free_port); portkey_port=$(free_port)
upstream="http://127.0.0.1:$static_port/plain/us-east-1/v1"
chat_body='{"model":"openai.gpt-oss-20b","messages":[{"role":"user","content":"hi"}]}'

# descendants PID: the process and every process under it.
descendants() { echo "$1"; local child; for child in $(pgrep -P "$1"); do descendants "$child"; done; }
answers() { # url bearer [header …]: the proxy answers the chat body with 200
  local url=$1 bearer=$2; shift 2
  curl -sf -o /dev/null -H "Authorization: Bearer $bearer" -H 'Content-Type: application/json' "$@" -d "$chat_body" "$url"
}
wait_answers() { for _ in $(seq 1 600); do answers "$@" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

start_proxy "http://127.0.0.1:$static_port/plain/{region}/v1"
wait_answers "http://127.0.0.1:$proxy_port/v1/chat/completions" "$key"

master=sk-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: openai.gpt-oss-20b
    litellm_params:
      model: openai/openai.gpt-oss-20b
      api_base: $upstream
      api_key: sk-upstream
litellm_settings:
  telemetry: false
YAML
( cd "$work" && LITELLM_MASTER_KEY=$master LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    exec "$peers/litellm/bin/litellm" --config litellm.yaml --host 127.0.0.1 --port "$litellm_port" \
    --num_workers "$LITELLM_WORKERS" >litellm.log 2>&1 ) & litellm_pid=$!; pids="$pids $litellm_pid"
( cd "$work" && TRUSTED_CUSTOM_HOSTS=127.0.0.1 exec node "$portkey/build/start-server.js" \
    --port="$portkey_port" --headless >portkey.log 2>&1 ) & portkey_pid=$!; pids="$pids $portkey_pid"
portkey_headers="x-portkey-provider: openai|x-portkey-custom-host: $upstream"
wait_answers "http://127.0.0.1:$litellm_port/v1/chat/completions" "$master" \
  || { cat "$work/litellm.log" >&2; exit 1; }
wait_answers "http://127.0.0.1:$portkey_port/v1/chat/completions" none \
  -H "x-portkey-provider: openai" -H "x-portkey-custom-host: $upstream"
# Every worker is up once the proxy answers; their pids are read after that.
PEER_PIDS[litellm]=$(descendants "$litellm_pid" | paste -sd' ')
PEER_PIDS[portkey]=$(descendants "$portkey_pid" | paste -sd' ')

echo
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d), DURATION=$DURATION, ROUNDS=$ROUNDS;" \
  "litellm $LITELLM_VERSION ($LITELLM_WORKERS workers), @portkey-ai/gateway $PORTKEY_VERSION, $(nginx -v 2>&1 | sed 's/.*: //')"
echo
header
names="nginx strata litellm portkey"
declare -A RATIOS
peer_load() { # name connections
  case $1 in
    nginx) load nginx plain "$2" "http://127.0.0.1:$pass_port/plain/us-east-1/v1/chat/completions" ;;
    strata) load strata plain "$2" "http://127.0.0.1:$proxy_port/v1/chat/completions" ;;
    litellm) LOAD_KEY=$master load litellm plain "$2" "http://127.0.0.1:$litellm_port/v1/chat/completions" ;;
    portkey) BENCH_HEADERS=$portkey_headers load portkey plain "$2" "http://127.0.0.1:$portkey_port/v1/chat/completions" ;;
  esac
}
for conns in 1 64; do
  load direct plain "$conns" "$upstream/chat/completions"
  rounds=1; ((conns > 1)) && rounds=$ROUNDS
  for _ in $(seq 1 "$rounds"); do
    for name in $names; do peer_load "$name" "$conns"; done
    # Each round's throughput against the nginx run just before it: the machine's pace
    # drifts between 10 s runs, so a ratio is taken within a round.
    for name in $names; do
      RATIOS[$name]+=" $(awk -v p="${RPS[$name.plain.$conns]}" -v n="${RPS[nginx.plain.$conns]}" 'BEGIN {printf "%.1f", 100 * p / n}')"
    done
  done
done

declare -A RSS
RSS[nginx]=$(hwm "$(cat "$work/pass.pid")" $(pgrep -P "$(cat "$work/pass.pid")"))
RSS[strata]=$(hwm "$proxy_pid")
RSS[litellm]=$(hwm ${PEER_PIDS[litellm]})
RSS[portkey]=$(hwm ${PEER_PIDS[portkey]})

echo
echo "added latency at c=1 (p50 and p99 above direct), throughput at c=64 (the median of $ROUNDS alternated rounds) and peak RSS, each also as a ratio to nginx proxy_pass:"
echo
echo "| proxy   | added p50 (ms) | × nginx | added p99 (ms) | × nginx | req/s at 64 | % of nginx | RSS (MiB) | × nginx |"
echo "| ---     |            --- |     --- |            --- |     --- |         --- |        --- |       --- |     --- |"
for name in $names; do
  awk -v n="$name" -v p50="${P50[$name.plain.1]}" -v p99="${P99[$name.plain.1]}" -v d50="${P50[direct.plain.1]}" \
      -v d99="${P99[direct.plain.1]}" -v n50="${P50[nginx.plain.1]}" -v n99="${P99[nginx.plain.1]}" \
      -v rps="${RPS[$name.plain.64]}" -v pct="$(median <<<"${RATIOS[$name]}")" \
      -v rss="${RSS[$name]}" -v nrss="${RSS[nginx]}" '
    function ratio(a, b) { return b > 0 ? sprintf("%.1f", a / b) : "-" }
    BEGIN {
      a50 = p50 - d50; a99 = p99 - d99
      printf "| %-7s | %14.3f | %7s | %14.3f | %7s | %11s | %9s%% | %9s | %7s |\n", n, a50, ratio(a50, n50 - d50),
        a99, ratio(a99, n99 - d99), rps, pct, rss, ratio(rss, nrss)
    }'
done
echo
echo "(req/s at 64: the last round's; % of nginx: the median of the rounds' ratios)"
