-- A blend of the traffic a deployed auth server sees: mostly GET /user, some refreshes, a few
-- password logins. Per request, a random draw out of 1000 picks the kind (per mille shares from
-- MIX_LOGIN and MIX_REFRESH; the rest is GET /user).
--
-- Usage: wrk ... -s mixed.lua <url> -- <token file> <threads>
-- Env: ACCESS_TOKEN (GET /user), EMAIL + PASSWORD (logins), MIX_LOGIN [1], MIX_REFRESH [50].
-- Refresh chains work as in refresh.lua: each thread takes its share of the token file as a
-- queue, a refresh pops one, and any response carrying a refresh_token (a rotation or a login)
-- pushes it, so every token is presented once. A thread whose queue is empty sends GET /user
-- instead of a refresh and counts it as `dry`.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

local queue
dry = 0
local login_share = tonumber(os.getenv("MIX_LOGIN") or "1")
local refresh_share = tonumber(os.getenv("MIX_REFRESH") or "50")
local json = { ["Content-Type"] = "application/json" }
local user_req, login_req

function init(args)
  queue = token_queue(args[1], tonumber(args[2]))
  math.randomseed(7919 * (tid + 1))
  user_req = wrk.format("GET", "/user", { ["Authorization"] = "Bearer " .. os.getenv("ACCESS_TOKEN") })
  login_req = wrk.format("POST", "/token?grant_type=password", json,
    string.format('{"email":"%s","password":"%s"}', os.getenv("EMAIL"), os.getenv("PASSWORD")))
end

request = function()
  local r = math.random(1000)
  if r <= login_share then
    return login_req
  elseif r <= login_share + refresh_share then
    local token = queue.pop()
    if not token then
      dry = dry + 1
      return user_req
    end
    return wrk.format("POST", "/token?grant_type=refresh_token", json, '{"refresh_token":"' .. token .. '"}')
  end
  return user_req
end

response = function(status, _, body)
  if status == 200 and body then
    local token = string.match(body, '"refresh_token":"([^"]+)"')
    if token then
      queue.push(token)
    end
  end
end

function done(summary, latency, _)
  local d = sum_threads("dry")
  report(summary, latency, d > 0 and ("dry=" .. d) or nil)
end
