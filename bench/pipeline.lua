-- HTTP pipelining as in TechEmpower's plaintext test: each write carries DEPTH requests (the
-- first script argument, default 16), sent before any answer is read. wrk counts every answer as
-- a request; its latency is that of the whole batch. Usage (as bench/run does):
--   wrk -s bench/pipeline.lua URL -- 16
-- The report at the end is bench/wrk-report.lua's, loaded from beside this file.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk-report.lua")

init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format()
   end
   req = table.concat(r)
end

request = function()
   return req
end
