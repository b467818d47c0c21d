-- wrk script of `bench --deployed`: GET /v1/members/{id}/overview for a random registered member.
-- wrk -s overview.lua URL -- MEMBERS_FILE RUN_TAG [TOKEN]
-- MEMBERS_FILE holds "members/<id>" names, one a line (RUN_TAG is unused: reads need no ids).
-- At the end one JSON line (prefixed "json ") with the requests, errors (non-2xx answers under
-- "status") and latency percentiles in microseconds, as purchase.lua prints, and "partial":
-- the 2xx answers naming a part the gateway left out (a service that did not answer).

local threads = {}
local members = {}
partial = 0  -- global: done() reads each thread's with thread:get

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then members[#members + 1] = line end
  end
  if args[3] then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
  wrk.method = "GET"
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  local path = "/v1/" .. members[math.random(#members)] .. "/overview"
  return wrk.format(nil, path)
end

function response(status, headers, body)
  -- the gateway writes every field, an empty list as []: only a named part counts
  if status < 300 and string.find(body, '"unavailable":["', 1, true) then
    partial = partial + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local left_out = 0
  for _, thread in ipairs(threads) do
    left_out = left_out + thread:get("partial")
  end
  io.write(string.format(
    'json {"partial":%d,"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    left_out, summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
