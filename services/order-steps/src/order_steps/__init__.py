"""order-steps: the order saga's steps and compensations (pattern 4, orchestration)."""
