-- The Lua variant of the benchmark: the same three constant response
-- headers as the other listeners, through Envoy's Lua filter.
function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  headers:add("x-bench-a", "1")
  headers:add("x-bench-b", "2")
  headers:add("x-bench-c", "3")
end
