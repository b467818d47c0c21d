-- wrk script of `bench --deployed`: POST /v1/purchases:record for a random member by phone.
-- wrk -s purchase.lua URL -- PHONES_FILE RUN_TAG [TOKEN]
-- Each request: a new order id and request id (the run's tag, the thread, a counter), 1-3
-- lines of CNY 10.00-500.00 at the mall. At the end one JSON line (prefixed "json ") with the
-- requests, errors (non-2xx answers under "status") and latency percentiles in microseconds.

local threads = {}
local counter = 0
local phones = {}
local tag = "run"

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then phones[#phones + 1] = line end
  end
  tag = args[2]
  if args[3] then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local lines = {}
  for n = 1, math.random(1, 3) do
    local cents = math.random(1000, 50000)
    lines[n] = string.format(
      '{"lineId":"%d","amount":{"currencyCode":"CNY","amount":"%d.%02d"}}',
      n, math.floor(cents / 100), cents % 100)
  end
  local id = string.format("%s%04x%012x", tag, tid, counter)
  local body = string.format(
    '{"identity":{"type":"phone","value":"%s"},"unit":"mall","orderId":"bench-%s",' ..
    '"channel":"CHANNEL_POS","requestId":"%s","lines":[%s]}',
    phones[math.random(#phones)], id, id, table.concat(lines, ","))
  return wrk.format(nil, "/v1/purchases:record", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'json {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
