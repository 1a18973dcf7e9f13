-- products-api's hot paths: `-- get IDS_FILE` reads products by id, round robin over the ids
-- in the file (one a line); `-- post PREFIX` creates products, each with a new sku
-- (PREFIX-1, PREFIX-2, ...), the body otherwise the README's example product. GET requests
-- are built once in init, so that wrk's own cost stays far below the server's; done() prints
-- the results as one JSON line.
local mode, requests, count, index, prefix = nil, {}, 0, 0, nil
local post_headers = { ["Content-Type"] = "application/json" }
local body_format = '{"sku":"%s-%d","name":"Red running shoe","description":"Lightweight, '
  .. 'size 42.","price":"89.90","currency":"EUR","stock":12,"tags":["shoes","running"]}'

init = function(args)
  mode = args[1]
  if mode == "get" then
    for id in io.lines(args[2]) do
      count = count + 1
      requests[count] = wrk.format("GET", "/products/" .. id)
    end
  elseif mode == "post" then
    prefix = args[2]
  else
    error("usage: -s rest.lua URL -- get IDS_FILE | post PREFIX")
  end
end

request = function()
  index = index + 1
  if mode == "get" then
    return requests[(index - 1) % count + 1]
  end
  return wrk.format("POST", "/products", post_headers, string.format(body_format, prefix, index))
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,'
      .. '"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
