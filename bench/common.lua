-- Shared by the bench/*.lua wrk scripts (loaded with dofile; BENCH_DIR is set by load.sh).
-- report() prints one machine-readable line that load.sh turns into the summary table:
--   RESULT <name> <req/s> <p50 ms> <p99 ms> <requests> <non-2xx> <socket errors> <note>
-- wrk counts a response with status > 399 as errors.status.

function report(summary, latency, note)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("RESULT %s %.1f %.2f %.2f %d %d %d %s\n",
    os.getenv("BENCH_NAME") or "unnamed",
    summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    note or "-"))
end

function done(summary, latency, requests)
  report(summary, latency)
end

-- Thread numbering shared by the scripts: setup() gives each thread a global `tid` (thread:set
-- writes a global into the thread's Lua state) and keeps the thread, so done() can add up a
-- per-thread counter with sum_threads(name).
local threads, next_id = {}, 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function sum_threads(name)
  local s = 0
  for _, t in ipairs(threads) do
    s = s + (tonumber(t:get(name)) or 0)
  end
  return s
end

-- A refresh-token queue of this thread's share of a token file: every <nthreads>-th non-empty
-- line, starting at line <tid>. pop() returns nil when empty; push() appends a rotated token.
function token_queue(file, nthreads)
  local q = { items = {}, head = 1, tail = 0 }
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == tid then
        q.tail = q.tail + 1
        q.items[q.tail] = line
      end
      i = i + 1
    end
  end
  function q.pop()
    if q.head > q.tail then
      return nil
    end
    local token = q.items[q.head]
    q.items[q.head] = nil
    q.head = q.head + 1
    return token
  end
  function q.push(token)
    q.tail = q.tail + 1
    q.items[q.tail] = token
  end
  return q
end
