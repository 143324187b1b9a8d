-- GET /user with a bearer access token (ACCESS_TOKEN).
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.path = "/user"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ACCESS_TOKEN")
