-- theme_bench.py: every request asks for the next tenant's load-theme, /bench-00000 … /bench-<N-1>, then again.
local requests, n, i = {}, 0, 0
function init(args)
  n = tonumber(args[1])
  for k = 0, n - 1 do requests[k + 1] = wrk.format("GET", string.format("/bench-%05d/api/public/load-theme", k)) end
end
function request()
  i = i % n + 1
  return requests[i]
end
