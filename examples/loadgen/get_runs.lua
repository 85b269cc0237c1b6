-- A wrk script that reads stored runs: every request is GET /api/v1/run/{id} for an id picked
-- at random from the file `loadgen --plain --ids-out FILE` wrote. Pass the file after `--`:
--
--   wrk -t2 -c64 -d30s -s examples/loadgen/get_runs.lua --latency http://127.0.0.1:8080 -- ids.txt

local ids = {}

function init(args)
  local path = args[1] or "ids.txt"
  for line in io.lines(path) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("no run ids in " .. path)
  end
  math.randomseed(os.time() + #ids)
end

function request()
  return wrk.format("GET", "/api/v1/run/" .. ids[math.random(#ids)])
end
