"""job-aggregator: the fan-in of pattern 5; counts each item's result once, completes the job."""
