-- wrk script: POST /v1/transfers of 0.01 between random wallets, each with a
-- fresh idempotency key. Env: KEY (a client's API key), WALLETS (a file of
-- wallet ids, one per line). Used by benches/http/run.sh.
local wallets = {}
for line in io.lines(os.getenv("WALLETS")) do
  if #line > 0 then table.insert(wallets, line) end
end
local counter = 0
local tid = tostring(math.random(1, 1e9))
request = function()
  counter = counter + 1
  local a = wallets[math.random(#wallets)]
  local b = wallets[math.random(#wallets)]
  while b == a do b = wallets[math.random(#wallets)] end
  local body = '{"fromWalletId":"' .. a .. '","toWalletId":"' .. b .. '","asset":"USD","amount":"0.01"}'
  return wrk.format("POST", "/v1/transfers", {
    ["X-API-KEY"] = os.getenv("KEY"),
    ["Content-Type"] = "application/json",
    ["X-IDEMPOTENCY-KEY"] = tid .. "-" .. counter,
  }, body)
end
