-- wrk script: the same chat completion request on every path (direct, nginx, strata).
-- BENCH_KEY: the bearer token (strata's key; sent everywhere, only the proxy reads it);
-- BENCH_STREAM=1 streams; BENCH_HEADERS: more headers, "Name: value|Name: value".
function init(args)
  local stream = os.getenv("BENCH_STREAM") == "1"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
  wrk.body = '{"model":"openai.gpt-oss-20b","messages":[{"role":"user","content":"Say hello in one word."}]'
    .. (stream and ',"stream":true' or '') .. '}'
  for header in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^|]+") do
    local name, value = string.match(header, "^%s*([^:]+):%s*(.*)$")
    if name then wrk.headers[name] = value end
  end
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx/3xx responses: %d\n", summary.errors.status))
end
