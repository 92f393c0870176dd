-- wrk script: POST /api/v1/projects with a unique name per request.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  token = os.getenv("STRATA_BENCH_TOKEN")
  run = os.getenv("STRATA_BENCH_RUN") or "r"
end

function request()
  counter = counter + 1
  local name = string.format("b%s-%d-%d", run, tid, counter)
  local body = string.format(
    '{"name":"%s","environment":"dev","team":"bench","region":"us-east-1",' ..
    '"allowed_models":["openai.gpt-oss-120b"],"tags":{"CostCenter":"cc-1"},"monthly_budget_usd":100}', name)
  return wrk.format("POST", "/api/v1/projects", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx/3xx responses: %d\n", summary.errors.status))
end
