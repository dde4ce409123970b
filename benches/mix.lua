-- The realistic scenario ("mix") of `cargo xtask bench` in Envoy's Lua
-- filter, written as an operator would: the same ten routes, header rules,
-- removal and 5xx rule as the filter's configuration in
-- xtask/src/bench/scenario.rs (the bench checks in Envoy that both, and
-- Envoy's own route table, produce the same headers before measuring).
--
-- Envoy's order: on each side the route's headers, then the top level's
-- (removals first); the 5xx rule last, decided on the response as it came.
-- The response side learns the route and the request values it needs
-- through the stream's dynamic metadata, as Lua filters do.

local function route_of(headers)
  local path = headers:get(":path") or ""
  local bare = path:match("^[^?]*")
  local function prefix(p) return bare:sub(1, #p) == p end
  if bare == "/healthz" then return "health", path end
  if prefix("/api/") and headers:get("x-canary") == "1" then return "canary", path end
  if prefix("/api/v1/users") then return "users", path end
  if prefix("/api/v1/orders") then return "orders", path end
  if bare:match("^/api/v1/items/%d+$") then return "item", path end
  if prefix("/api/v2/") then return "v2", path end
  if bare == "/login" then return "login", path end
  if prefix("/static/") then return "static", path end
  if prefix("/admin") and headers:get("x-tenant") ~= nil then return "admin", path end
  return "default", path
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local info = request_handle:streamInfo()
  local route, path = route_of(headers)
  local tenant = headers:get("x-tenant")
  local client = info:downstreamRemoteAddress()
  -- The route's level.
  if route == "orders" then
    headers:add("x-tenant-orders", "orders/" .. (tenant or ""))
  elseif route == "admin" then
    headers:add("x-forwarded-client", client)
  end
  -- The top level.
  headers:replace("x-client-ip", client:match("^(.*):%d+$"))
  headers:add("x-request-start", "t=" .. os.time())
  -- What the response side needs.
  local metadata = info:dynamicMetadata()
  metadata:set("bench.mix", "route", route)
  if tenant ~= nil then
    metadata:set("bench.mix", "tenant", tenant)
  end
  if route == "v2" then
    metadata:set("bench.mix", "path", path)
  end
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local kept = response_handle:streamInfo():dynamicMetadata():get("bench.mix") or {}
  local failed = (headers:get(":status") or ""):sub(1, 1) == "5"
  local route = kept.route
  -- The route's level.
  if route ~= nil then
    headers:add("x-route", route)
  end
  if route == "health" then
    headers:add("cache-control", "no-cache")
  elseif route == "v2" then
    headers:add("x-request-path", kept.path)
  elseif route == "static" then
    headers:add("cache-control", "public, max-age=3600")
  end
  -- The top level.
  headers:remove("x-powered-by")
  if kept.tenant ~= nil then
    headers:add("x-tenant", kept.tenant)
  end
  -- The 5xx rule.
  if failed then
    headers:replace("cache-control", "no-store")
  end
end
