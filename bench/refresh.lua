-- POST /token?grant_type=refresh_token, rotating real chains.
--
-- Usage: wrk ... -s refresh.lua <url> -- <token file> <threads>
-- Each thread takes every <threads>-th line of the token file as its queue. A request pops a
-- token; the response pushes the rotated token read from the body, so each token is presented
-- exactly once (no reuse detection) and a thread with at least as many tokens as connections
-- never runs dry. A failed rotation loses that chain; if a queue does empty, the thread stops
-- early and `starved` is reported.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local queue, head, tail = {}, 1, 0
starved = 0

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == tid then
        tail = tail + 1
        queue[tail] = line
      end
      i = i + 1
    end
  end
end

local headers = { ["Content-Type"] = "application/json" }

request = function()
  if head > tail then
    starved = starved + 1
    wrk.thread:stop()
    return wrk.format("GET", "/health")
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", "/token?grant_type=refresh_token", headers,
    '{"refresh_token":"' .. token .. '"}')
end

response = function(status, _, body)
  local token = status == 200 and body and string.match(body, '"refresh_token":"([^"]+)"')
  if token then
    tail = tail + 1
    queue[tail] = token
  end
end

function done(summary, latency, _)
  local s = 0
  for _, t in ipairs(threads) do
    s = s + (tonumber(t:get("starved")) or 0)
  end
  report(summary, latency, s > 0 and ("starved=" .. s) or nil)
end
