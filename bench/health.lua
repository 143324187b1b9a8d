-- GET /health (the URL given to wrk already ends in /health).
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
