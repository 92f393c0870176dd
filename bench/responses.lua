-- wrk script: one Responses API create (plain), the same on every run.
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
  wrk.body = '{"model":"openai.gpt-oss-20b","input":"Say hello in one word."}'
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx/3xx responses: %d\n", summary.errors.status))
end
