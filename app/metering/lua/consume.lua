--[==[
consume.lua -- check and count one request's items for ONE organization, atomically.

Every layer (suspension, project cap, spike-protection bucket, monthly allowance, on-demand budget)
is checked and updated here, in one call, on one Redis Cluster slot (all keys share the org's hash
tag). PostgreSQL is never consulted: the org's QuotaConfig was materialized into KEYS[1].

KEYS[1]  tg:{org}:qc         string: QuotaConfig.to_redis(), one MessagePack array (one GET):
                               [1] version  [2] "active"|"suspended"  [3] period start P
                               [4] period end (unix s)  [5] on-demand budget (cents)
                               [6] spike protection paused until (unix s)  [7] categories
                               [8] limits (-1 = unlimited)  [9] on-demand cents/unit (-1 = none)
                               [10] spike rate/s (0 = no bucket)  [11] spike capacity
                                 (8-11 aligned with 7)
                               [12] {"<project>:<category>": cap}
                               [13..17] plan, plan version, features, members, retention
                                 (entitlements; not read here)
KEYS[2]  tg:{org}:u          hash of counters; fields prefixed by the period start P:
                               P:u:<c>  units accepted (allowance + on-demand, net of refunds)
                               P:o:<c>  of which on-demand
                               P:x:<c>:<reason>  units refused, by reason
                               P:p:<project>:<c> units accepted for a capped project
                               P:e      the period's end;  p  the current period start
                               b:<c> bt:<c>  spike bucket tokens and when they were last updated
                               L:<lease> "P|<c>|<granted>|<project>" for leases not yet returned
KEYS[3]  tg:{org}:idem:<key> the first answer for an idempotency key (only used if ARGV[3]=="1")

ARGV[1]  now        unix seconds (may be fractional)
ARGV[2]  grace      seconds counters outlive their period end
ARGV[3]  "1" to replay/store the answer under KEYS[3], "" otherwise
ARGV[4]  idempotency ttl, seconds
ARGV[5]  "1" = allow partial grants; "" = each item all-or-nothing
ARGV[6]  lease id ("" = none): record each granted item as a lease that can be returned
ARGV[7..] triples: category, quantity (integer >= 0; 0 = pure check), project ("" = none)

Returns a MessagePack array (cheaper for Redis to build than JSON or a nested RESP reply):
  ["miss"]                 no config: load it, then call again
  ["stale", T]             now >= period end T: refresh the config, then call again
  ["ok", V, P, T, [item...], [exhausted...]]           config version V, period [P, T)
  "R" .. <the "ok" answer as first stored>             replayed for a known idempotency key
    item      = [accepted 1|0, granted, source "a"|"o"|"", remaining (-1 = unlimited),
                 limit (-1 = unlimited), reason or "", retry_after seconds (uncapped)]
    exhausted = [category, reason, retry_after]: categories that would refuse a further unit.
  reasons: usage_exceeded, on_demand_exhausted, spike_protection, project_cap, suspended,
           unknown_category
An item is wholly accepted or not counted at all (a refusal is counted only as a refusal); with
partial grants, as much as fits. Items apply in order: later items see earlier consumption.

Cost: one GET, one HMGET (the period marker, then used and on-demand of every category, then the
spike buckets of the categories asked for), one HINCRBY per granted item (plus HSET of a bucket).

Example: limit 10 errors, 9 used, no on-demand.
  items (error, 2) -> ["ok",V,P,T,[[0,0,"",1,10,"usage_exceeded",T-now]],[]]       nothing counted
  items (error, 1) -> ["ok",V,P,T,[[1,1,"a",0,10,"",0]],[["error","usage_exceeded",T-now]]]
--]==]

local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local use_idem = ARGV[3] == "1"
local partial = ARGV[5] == "1"
local lease = ARGV[6]
assert(now and grace, "now and grace must be numbers")
assert((#ARGV - 6) % 3 == 0 and #ARGV > 6, "items come in (category, quantity, project) triples")

if use_idem then
  local prev = redis.call("GET", KEYS[3])
  if prev then return "R" .. prev end
end

local packed = redis.call("GET", KEYS[1])
if not packed then return cmsgpack.pack({"miss"}) end
local cfg = cmsgpack.unpack(packed)
local pe = cfg[4]
if now >= pe then return cmsgpack.pack({"stale", pe}) end
local P = tostring(cfg[3])
local cats = cfg[7]
local limits, prices, rates, caps = {}, {}, {}, {}
for i, c in ipairs(cats) do
  limits[c] = cfg[8][i]
  if cfg[9][i] >= 0 then prices[c] = cfg[9][i] end
  if cfg[10][i] > 0 then rates[c], caps[c] = cfg[10][i], cfg[11][i] end
end

-- one read: the period marker, used/on-demand of every category, buckets of the asked categories
local n = (#ARGV - 6) / 3
local fields = {"p"}
for i, c in ipairs(cats) do
  fields[2 * i] = P .. ":u:" .. c
  fields[2 * i + 1] = P .. ":o:" .. c
end
local spike_on = now >= cfg[6]
local bidx = {}
if spike_on then
  for k = 0, n - 1 do
    local c = ARGV[7 + 3 * k]
    if rates[c] and not bidx[c] then
      bidx[c] = #fields + 1
      fields[#fields + 1] = "b:" .. c
      fields[#fields + 1] = "bt:" .. c
    end
  end
end
local U = KEYS[2]
local vals = redis.call("HMGET", U, unpack(fields))

if vals[1] ~= P then
  -- First call of a new period: counters start from zero. Keep the previous period's fields
  -- (late refunds, last flush) and drop anything older.
  local keep = {[P] = true}
  if vals[1] then keep[vals[1]] = true end
  local names = redis.call("HKEYS", U)
  for _, f in ipairs(names) do
    local prefix = string.match(f, "^(%d+):")
    if prefix and not keep[prefix] then redis.call("HDEL", U, f) end
  end
  redis.call("HSET", U, "p", P, P .. ":e", pe)
  -- relative to the caller's clock (ARGV[1]), not Redis' own, so both agree on "period end"
  redis.call("EXPIRE", U, math.max(1, math.ceil(pe + grace - now)))
end

local used, od = {}, {}
for i, c in ipairs(cats) do
  used[c] = tonumber(vals[2 * i]) or 0
  od[c] = tonumber(vals[2 * i + 1]) or 0
end
local tok, tokt = {}, {}
for c, j in pairs(bidx) do
  tok[c] = tonumber(vals[j])
  tokt[c] = tonumber(vals[j + 1]) or now
end

local INF = math.huge
local budget = cfg[5]
local spent = 0
for _, c in ipairs(cats) do spent = spent + od[c] * (prices[c] or 0) end
local suspended = cfg[2] == "suspended"
local until_end = pe - now

local function on_demand_left(c)
  local price = prices[c]
  if budget <= 0 or price == nil then return 0 end
  if price <= 0 then return INF end
  return math.max(0, math.floor((budget - spent) / price + 1e-9))
end

local function allowance_left(c, limit)
  if limit < 0 then return INF end
  return math.max(0, limit - (used[c] - od[c]))
end

local function bucket(c)
  local rate = rates[c]
  if rate == nil or not spike_on then return nil, nil, nil end
  local cap = caps[c]
  local t = tok[c]
  if t == nil then t = cap else t = math.min(cap, t + math.max(0, now - tokt[c]) * rate) end
  return t, rate, cap
end

local function finite(x) if x == INF then return -1 end return x end

local results = {}
for k = 0, n - 1 do
  local c = ARGV[7 + 3 * k]
  local q = tonumber(ARGV[8 + 3 * k])
  local proj = ARGV[9 + 3 * k]
  local limit = limits[c]
  assert(q and q >= 0 and q == math.floor(q), "quantity must be a whole number >= 0")
  if limit == nil then
    results[#results + 1] = {0, 0, "", 0, 0, "unknown_category", 0}
  elseif suspended then
    if q > 0 then redis.call("HINCRBY", U, P .. ":x:" .. c .. ":suspended", q) end
    results[#results + 1] = {0, 0, "", finite(allowance_left(c, limit)), limit, "suspended",
                             until_end}
  else
    local allow = allowance_left(c, limit)
    local odl = on_demand_left(c)
    local capl, pfield = INF, nil
    if proj ~= "" then
      local cap = cfg[12][proj .. ":" .. c]
      if cap then
        pfield = P .. ":p:" .. proj .. ":" .. c
        capl = math.max(0, cap - (tonumber(redis.call("HGET", U, pfield)) or 0))
      end
    end
    local t, rate, bcap = bucket(c)
    local spikel = INF
    if t then spikel = math.floor(t + 1e-9) end
    local fit = math.min(capl, spikel, allow + odl)
    local need = math.max(q, 1)
    local g = 0
    if q > 0 and q <= fit then g = q elseif q > 0 and partial and fit > 0 then g = fit end
    if g > 0 or (q == 0 and fit >= 1) then
      local from_allow = math.min(g, allow)
      local from_od = g - from_allow
      if g > 0 then
        used[c] = used[c] + g
        redis.call("HINCRBY", U, P .. ":u:" .. c, g)
        if from_od > 0 then
          od[c] = od[c] + from_od
          spent = spent + from_od * (prices[c] or 0)
          redis.call("HINCRBY", U, P .. ":o:" .. c, from_od)
        end
        if pfield then redis.call("HINCRBY", U, pfield, g) end
        if t then
          tok[c] = t - g
          tokt[c] = now
          redis.call("HSET", U, "b:" .. c, tostring(t - g), "bt:" .. c, tostring(now))
        end
        if lease ~= "" then
          redis.call("HSET", U, "L:" .. lease, P .. "|" .. c .. "|" .. g .. "|" .. proj)
        end
      end
      local src = "a"
      if from_od > 0 then src = "o" end
      results[#results + 1] = {1, g, src, finite(allow - from_allow), limit, "", 0}
    else
      local reason, retry
      if capl < need then
        reason, retry = "project_cap", until_end
      elseif allow + odl < need then
        retry = until_end
        if budget > 0 and prices[c] then reason = "on_demand_exhausted"
        else reason = "usage_exceeded" end
      else
        reason = "spike_protection"
        if need > bcap then retry = until_end else retry = (need - t) / rate end
      end
      if q > 0 then redis.call("HINCRBY", U, P .. ":x:" .. c .. ":" .. reason, q) end
      results[#results + 1] = {0, 0, "", finite(allow), limit, reason, retry}
    end
  end
end

local exhausted = {}
for _, c in ipairs(cats) do
  local limit = limits[c]
  if suspended then
    exhausted[#exhausted + 1] = {c, "suspended", until_end}
  elseif limit >= 0 and allowance_left(c, limit) + on_demand_left(c) < 1 then
    local reason = "usage_exceeded"
    if budget > 0 and prices[c] then reason = "on_demand_exhausted" end
    exhausted[#exhausted + 1] = {c, reason, until_end}
  end
end

local out = {"ok", cfg[1], cfg[3], pe, results, exhausted}
if use_idem then
  local stored = cmsgpack.pack(out)
  redis.call("SET", KEYS[3], stored, "EX", tonumber(ARGV[4]))
  return stored
end
return cmsgpack.pack(out)
