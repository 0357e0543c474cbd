-- wrk script: POST one new message per request, each with a fresh client_id,
-- round-robin over the conversations given as "cid:user" arguments.
local convs = {}
local counter = 0
local key = os.getenv("BENCH_KEY")
local run = os.getenv("BENCH_RUN") or "0"

function init(args)
    for _, a in ipairs(args) do
        local cid, user = a:match("([^:]+):(.+)")
        convs[#convs + 1] = { cid = cid, user = user }
    end
end

function request()
    counter = counter + 1
    local c = convs[(counter % #convs) + 1]
    local body = string.format(
        '{"client_id":"b%s-%d","type":"text","text":"benchmark message %d"}',
        run, counter, counter)
    return wrk.format("POST", "/v1/conversations/" .. c.cid .. "/messages", {
        ["Authorization"] = "Bearer " .. key,
        ["X-Parley-User"] = c.user,
        ["Content-Type"] = "application/json",
    }, body)
end

function done(summary, latency, requests)
    io.write(string.format("errors: %d non-2xx/3xx of %d\n",
        summary.errors.status, summary.requests))
end
