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
