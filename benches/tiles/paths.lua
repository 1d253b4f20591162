-- wrk script for benches/tiles.sh: cycles through a list of tile paths.
--
--   wrk -t1 -c64 -d20s --latency -s benches/tiles/paths.lua URL -- PATHS_FILE PREFIX [SUFFIX]
--
-- PATHS_FILE has one "z/x/y" per line; request i is GET PREFIX .. line .. SUFFIX with
-- `Accept-Encoding: gzip` (e.g. PREFIX=/tiles/NAME/ SUFFIX=.pbf, or PREFIX=/SOURCE/ for martin).
-- All requests are built once in init(); each thread starts at a different offset of the list
-- (thread k of n at k*len/n) and wraps around at the end.
--
-- Every response's status is counted. done() prints one machine-readable line,
--   RESULT requests=N duration_us=N rps=N p50_us=N p90_us=N p99_us=N max_us=N bytes=N
--          non200=N s200=N s204=N s400=N s404=N sother=N gzip=N errors=N timeouts=N
-- (one line), which benches/tiles.sh parses; `non200` lets the caller fail a run whose speed
-- came from 404s. Counting needs response(), which makes wrk hand each response's headers and
-- body to Lua: a fixed client-side cost that both servers pay alike.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
  -- Set after every setup() call, so every thread sees the final count.
  for _, t in ipairs(threads) do
    t:set("thread_count", #threads)
  end
end

local requests = {}
local n, i = 0, 0
s200, s204, s400, s404, sother, gzip = 0, 0, 0, 0, 0, 0

function init(args)
  local file, prefix, suffix = args[1], args[2] or "/", args[3] or ""
  if not file then
    error("paths.lua: usage: wrk ... -s paths.lua URL -- PATHS_FILE PREFIX [SUFFIX]")
  end
  local f = assert(io.open(file, "r"))
  local headers = { ["Accept-Encoding"] = "gzip" }
  for line in f:lines() do
    if line ~= "" then
      n = n + 1
      requests[n] = wrk.format("GET", prefix .. line .. suffix, headers)
    end
  end
  f:close()
  if n == 0 then
    error("paths.lua: no paths in " .. file)
  end
  local k, count = thread_index or 0, thread_count or 1
  i = math.floor(k * n / count) % n
end

function request()
  i = i + 1
  if i > n then
    i = 1
  end
  return requests[i]
end

function response(status, headers, body)
  if status == 200 then
    s200 = s200 + 1
    local ce = headers["Content-Encoding"] or headers["content-encoding"]
    if ce == "gzip" then
      gzip = gzip + 1
    end
  elseif status == 204 then
    s204 = s204 + 1
  elseif status == 404 then
    s404 = s404 + 1
  elseif status == 400 then
    s400 = s400 + 1
  else
    sother = sother + 1
  end
end

function done(summary, latency, _)
  local c = { s200 = 0, s204 = 0, s400 = 0, s404 = 0, sother = 0, gzip = 0 }
  for _, t in ipairs(threads) do
    for name, _ in pairs(c) do
      c[name] = c[name] + (t:get(name) or 0)
    end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d bytes=%d " ..
    "non200=%d s200=%d s204=%d s400=%d s404=%d sother=%d gzip=%d errors=%d timeouts=%d\n",
    summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.bytes, c.s204 + c.s400 + c.s404 + c.sother, c.s200, c.s204, c.s400, c.s404, c.sother,
    c.gzip, e.connect + e.read + e.write, e.timeout))
end
