--[==[
refund.lua -- give back units consumed earlier (events dropped later), or a lease's unused rest.

A refund lands in the period it names (the consume's period), not in the current one, so it is
right even after a rollover; refunds come off on-demand first (the customer's money), then the
allowance, and never below zero.

KEYS[1]  tg:{org}:qc    (only to learn the current period when ARGV[5] is ""; see consume.lua)
KEYS[2]  tg:{org}:u     counters (see consume.lua)
KEYS[3]  tg:{org}:idem:<key>  used only if ARGV[2] == "1"
ARGV[1]  now (unix seconds)
ARGV[2]  grace: a period that ended more than this many seconds ago takes no refunds
ARGV[3]  "1" to replay/store the answer under KEYS[3]
ARGV[4]  idempotency ttl, seconds
ARGV[5]  period start P to refund into ("" = the current period)
ARGV[6]  lease id: return the lease's unused units (then ARGV[7..] is one triple whose quantity is
         the unused amount; its category and project are taken from the lease), or ""
ARGV[7..] triples: category, quantity (integer >= 0), project ("" = none)

Returns a MessagePack array (prefixed with "R" when replayed from KEYS[3]):
  ["ok", P, [[category, refunded], ...]]
  ["unknown_period"]       P is neither the current nor the previous period, or it ended more
                           than the grace ago (its counters are final)
  ["unknown_lease"]        no such lease, or it was returned already
  ["miss"]                 no config and no period given
--]==]

local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local use_idem = ARGV[3] == "1"
if use_idem then
  local prev = redis.call("GET", KEYS[3])
  if prev then return "R" .. prev end
end
local U = KEYS[2]
local P = ARGV[5]
local lease = ARGV[6]
local items = {}
for k = 7, #ARGV, 3 do
  local q = tonumber(ARGV[k + 1])
  assert(q and q >= 0 and q == math.floor(q), "quantity must be a whole number >= 0")
  items[#items + 1] = {ARGV[k], q, ARGV[k + 2]}
end

if lease ~= "" then
  local rec = redis.call("HGET", U, "L:" .. lease)
  if not rec then return cmsgpack.pack({"unknown_lease"}) end
  local lp, lc, lg, lproj = string.match(rec, "^([^|]*)|([^|]*)|([^|]*)|(.*)$")
  P = lp
  items = {{lc, math.min(items[1][2], tonumber(lg)), lproj}}
  redis.call("HDEL", U, "L:" .. lease)
end

if P == "" then
  local packed = redis.call("GET", KEYS[1])
  if not packed then return cmsgpack.pack({"miss"}) end
  P = tostring(cmsgpack.unpack(packed)[3])
end
local ends = tonumber(redis.call("HGET", U, P .. ":e"))
if (redis.call("HGET", U, "p") ~= P and not ends) or (ends and now > ends + grace) then
  return cmsgpack.pack({"unknown_period"})
end

local out = {}
for _, it in ipairs(items) do
  local c, q, proj = it[1], it[2], it[3]
  local used = tonumber(redis.call("HGET", U, P .. ":u:" .. c)) or 0
  local r = math.min(q, used)
  if r > 0 then
    local od = tonumber(redis.call("HGET", U, P .. ":o:" .. c)) or 0
    local from_od = math.min(r, od)
    redis.call("HINCRBY", U, P .. ":u:" .. c, -r)
    if from_od > 0 then redis.call("HINCRBY", U, P .. ":o:" .. c, -from_od) end
    redis.call("HINCRBY", U, P .. ":r:" .. c, r)
    if proj ~= "" then
      local pf = P .. ":p:" .. proj .. ":" .. c
      local pv = tonumber(redis.call("HGET", U, pf))
      if pv then redis.call("HINCRBY", U, pf, -math.min(r, pv)) end
    end
  end
  out[#out + 1] = {c, r}
end
local res = cmsgpack.pack({"ok", tonumber(P), out})
if use_idem then redis.call("SET", KEYS[3], res, "EX", tonumber(ARGV[4])) end
return res
