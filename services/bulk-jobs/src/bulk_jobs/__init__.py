"""bulk-jobs: the fan-out of pattern 5, and the jobs' store the aggregator shares.

- `sources`: items read from an inline list or streamed from a JSON Lines object, with
  positions a resume starts from.
- `fanout`: one `item.requested` per item, bounded, checkpointed and resumable.
- `store`: jobs, each item's result once, counts, and the job's completion exactly once.
- `api`: the REST routes; `main`: the app (`fnkit-serve bulk_jobs.main:app`).
"""
