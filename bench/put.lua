-- wrk script: POST a body of BODY_BYTES to a fresh key per request.
local size = tonumber(os.getenv("BODY_BYTES") or "4096")
local body = string.rep("b", size)
local auth = os.getenv("AUTH")
local counter = 0
local thread_seq = 0

function setup(thread)
  thread_seq = thread_seq + 1
  thread:set("tid", thread_seq)
end

function init(args)
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Authorization"] = auth
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function request()
  counter = counter + 1
  return wrk.format(nil, "/objects/bench/put-" .. tid .. "-" .. counter)
end
