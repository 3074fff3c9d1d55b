-- wrk script: GET one of KEYS pre-loaded objects, in turn.
local keys = tonumber(os.getenv("KEYS") or "1000")
local prefix = os.getenv("KEY_PREFIX") or "get-"
local auth = os.getenv("AUTH")
local counter = 0
local thread_seq = 0

function setup(thread)
  thread_seq = thread_seq + 1
  thread:set("tid", thread_seq)
end

function init(args)
  wrk.headers["Authorization"] = auth
  counter = tid * 7919
end

function request()
  counter = counter + 1
  return wrk.format("GET", "/objects/bench/" .. prefix .. (counter % keys))
end
