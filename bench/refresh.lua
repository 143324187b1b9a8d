-- POST /token?grant_type=refresh_token, rotating real chains.
--
-- Usage: wrk ... -s refresh.lua <url> -- <token file> <threads>
-- Each thread takes every <threads>-th line of the token file as its queue. A request pops a
-- token; the response pushes the rotated token read from the body, so each token is presented
-- exactly once (no reuse detection) and a thread with at least as many tokens as connections
-- never runs dry. A failed rotation loses that chain; if a queue does empty, the thread stops
-- early and `starved` is reported.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

local queue
starved = 0

function init(args)
  queue = token_queue(args[1], tonumber(args[2]))
end

local headers = { ["Content-Type"] = "application/json" }

request = function()
  local token = queue.pop()
  if not token then
    starved = starved + 1
    wrk.thread:stop()
    return wrk.format("GET", "/health")
  end
  return wrk.format("POST", "/token?grant_type=refresh_token", headers,
    '{"refresh_token":"' .. token .. '"}')
end

response = function(status, _, body)
  local token = status == 200 and body and string.match(body, '"refresh_token":"([^"]+)"')
  if token then
    queue.push(token)
  end
end

function done(summary, latency, _)
  local s = sum_threads("starved")
  report(summary, latency, s > 0 and ("starved=" .. s) or nil)
end
