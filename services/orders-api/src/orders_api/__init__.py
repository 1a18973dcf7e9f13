"""orders-api: places orders and shows how their saga is going (pattern 4, orchestration)."""
