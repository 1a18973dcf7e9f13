"""devplane: the local event plane (broker, triggers, cron, workflows) and local servers.

- `config`: routing read from the chart's values (Triggers, delivery, CronJobs), validated.
- `broker`: ingress, per-subscriber queues, Knative delivery semantics, replies, dead letters.
- `eventlog`: the bounded log behind `GET /events`.
- `cron`, `scheduler`: CronJob schedules and their runs.
- `knobs`: fault injection for tests.
- `api`: the REST routes; `main`: the app (`fnkit-serve devplane.main:app`).
- `dev`: `python -m devplane.dev`, the `make dev` launcher; `servers`: MongoDB and MinIO.

The Argo workflow runner belongs beside them as its own module (`workflows`), built in
`main.build_plane` with the rest and given its routes in `api`.
"""
