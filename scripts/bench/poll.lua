-- wrk script for the status-polling benchmark: GET /v1/jobs/{id}, rotating over existing jobs.
--   BENCH_IDS=file  one "id [etag]" per line (written by driver.py etags)
--   BENCH_ETAG=1    send If-None-Match with the job's current ETag (the 304 path)
--   BENCH_KEY=mq_…  API key sent as Authorization: Bearer (when the API wants one)
local threads = 0

function setup(thread)
  thread:set("offset", threads * 487)
  threads = threads + 1
end

local ids, etags = {}, {}
local i = 0
local use_etag = os.getenv("BENCH_ETAG") == "1"
local key = os.getenv("BENCH_KEY")

function init(args)
  local path = os.getenv("BENCH_IDS")
  assert(path, "BENCH_IDS is not set")
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local id, etag = line:match("^(%S+)%s*(%S*)")
    if id then
      ids[#ids + 1] = id
      etags[#etags + 1] = etag
    end
  end
  f:close()
  assert(#ids > 0, "no ids")
  i = (offset or 0) % #ids
end

function request()
  i = i % #ids + 1
  local headers = {}
  if key and key ~= "" then
    headers["Authorization"] = "Bearer " .. key
  end
  if use_etag then
    headers["If-None-Match"] = etags[i]
  end
  return wrk.format("GET", "/v1/jobs/" .. ids[i], headers)
end
