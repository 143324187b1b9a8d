-- POST /signup with a unique email per request.
-- `tid` (the thread's number) comes from setup() in common.lua.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

local run = os.getenv("RUN_ID") or tostring(os.time())
local password = os.getenv("PASSWORD") or "bench-password-1234"
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"email":"load_%s_%d_%d@example.com","password":"%s"}', run, tid, counter, password)
  return wrk.format("POST", "/signup", { ["Content-Type"] = "application/json" }, body)
end
