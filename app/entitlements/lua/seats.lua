--[==[
seats.lua -- count an organization's members against its seat limit, atomically.

The member set and the limit are read and changed in one call on one Redis Cluster slot (all keys
share the org's hash tag), so concurrent joins racing at the limit admit exactly the limit. The
limit is the members field of the org's materialized config (the one the meter reads), so a
plan change, an override or a trial applies to seats the moment the config is re-published.

KEYS[1]  tg:{org}:qc               QuotaConfig.to_redis() (a MessagePack array, see consume.lua);
                                     only [16] is read here (member limit, -1 = unlimited)
KEYS[2]  tg:{org}:seats            set of member ids, plus the sentinel member "" meaning "loaded":
                                     an org without members is {""}; a missing key means the set
                                     must be loaded from the database first (op "load")
KEYS[3]  tg:{org}:seats:idem:<key> the first answer for an idempotency key (only if ARGV[2] == "1")

ARGV[1]  op: "join" | "leave" | "count" | "load" | "undo_join" | "undo_leave"
ARGV[2]  "1" to replay/store the answer under KEYS[3], "" otherwise
ARGV[3]  idempotency ttl, seconds
ARGV[4..] join / leave / undo_*: exactly one member id (non-empty)
          load: every member id the database holds (zero or more)

Returns a JSON string (prefixed with "R" when replayed from KEYS[3]):
  {"s":"miss"}                        no config: load it, then call again (join, leave, count)
  {"s":"unloaded"}                    no member set: call "load", then call again
  {"s":"ok","c":1|0,"n":N,"l":L}      c = whether the set changed, N = members now, L = limit
  {"s":"full","n":N,"l":L}            join refused: N >= L; nothing changed
Only "ok" and "full" answers are stored for replay. A join of a member already in the set is "ok"
with c = 0 even at or over the limit (repeating a join is harmless); when a downgrade leaves N > L,
existing members stay and every new join is "full" until N < L. "undo_*" reverse a change whose
durable copy could not be written, and forget its idempotency answer.

Example: limit 2, members {a, b}.
  join c -> {"s":"full","n":2,"l":2}     join a -> {"s":"ok","c":0,"n":2,"l":2}
  leave b -> {"s":"ok","c":1,"n":1,"l":2} join c -> {"s":"ok","c":1,"n":2,"l":2}
--]==]

local op = ARGV[1]
local use_idem = ARGV[2] == "1"
local S = KEYS[2]
assert(op == "join" or op == "leave" or op == "count" or op == "load" or op == "undo_join"
       or op == "undo_leave", "unknown op")

if op == "load" then
  if redis.call("EXISTS", S) == 0 then
    redis.call("SADD", S, "")
    local batch = {}
    for i = 4, #ARGV do
      batch[#batch + 1] = ARGV[i]
      if #batch == 1000 then
        redis.call("SADD", S, unpack(batch))
        batch = {}
      end
    end
    if #batch > 0 then redis.call("SADD", S, unpack(batch)) end
  end
  return '{"s":"ok"}'
end

local member = ARGV[4]
assert(op == "count" or (member and member ~= ""), "a member id is required")

if op == "undo_join" or op == "undo_leave" then
  if op == "undo_join" then redis.call("SREM", S, member) else redis.call("SADD", S, member) end
  if use_idem then redis.call("DEL", KEYS[3]) end
  return '{"s":"ok"}'
end

if use_idem then
  local prev = redis.call("GET", KEYS[3])
  if prev then return "R" .. prev end
end

local packed = redis.call("GET", KEYS[1])
if not packed then return '{"s":"miss"}' end
local limit = cmsgpack.unpack(packed)[16]
if redis.call("EXISTS", S) == 0 then return '{"s":"unloaded"}' end

local n = redis.call("SCARD", S) - 1
local out
if op == "count" then
  out = cjson.encode({s = "ok", c = 0, n = n, l = limit})
elseif op == "leave" then
  local c = redis.call("SREM", S, member)
  out = cjson.encode({s = "ok", c = c, n = n - c, l = limit})
elseif redis.call("SISMEMBER", S, member) == 1 then
  out = cjson.encode({s = "ok", c = 0, n = n, l = limit})
elseif limit >= 0 and n >= limit then
  out = cjson.encode({s = "full", n = n, l = limit})
else
  redis.call("SADD", S, member)
  out = cjson.encode({s = "ok", c = 1, n = n + 1, l = limit})
end

if use_idem and op ~= "count" then redis.call("SET", KEYS[3], out, "EX", tonumber(ARGV[3])) end
return out
