-- Each wrk thread takes its share of pre-signed, distinct webhook bodies (one per line:
-- signature TAB body) and stops when it has sent them all, so no request is a redelivery.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  sigs, bodies = {}, {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local tab = line:find("\t", 1, true)
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    i = i + 1
  end
  idx = 0
  sent = 0
end

function request()
  idx = idx + 1
  if idx > #bodies then
    wrk.thread:stop()
    idx = #bodies
  else
    sent = sent + 1
  end
  return wrk.format("POST", "/webhooks/edume",
    { ["Content-Type"] = "application/json", ["X-Edume-Signature"] = sigs[idx] }, bodies[idx])
end

function done(summary, latency, requests)
  local distinct = 0
  for _, t in ipairs(threads) do distinct = distinct + t:get("sent") end
  io.write(string.format("BENCH requests=%d errors=%d distinct=%d seconds=%.3f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout, distinct, summary.duration / 1e6))
  io.write(string.format("BENCH p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
