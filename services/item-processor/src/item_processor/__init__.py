"""item-processor: one bulk-job item per event; validates a product record and upserts it."""
