-- POST one binary-mode CloudEvent per request, with the attributes a Knative broker delivers
-- (time, traceparent, knativearrivaltime). The request is built once, so that wrk's
-- own cost stays far below the server's; done() prints the results as one JSON line.
wrk.method = "POST"
wrk.path = "/"
wrk.body = '{"message":"hello from wrk","n":42,"tags":["bench","echo"]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-id"] = "bench-0001"
wrk.headers["ce-source"] = "/bench/wrk"
wrk.headers["ce-type"] = "io.knative-playbook.bench.requested.v1"
wrk.headers["ce-time"] = "2026-01-02T03:04:05.678Z"
wrk.headers["ce-knativearrivaltime"] = "2026-01-02T03:04:05.912Z"
wrk.headers["ce-traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

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
