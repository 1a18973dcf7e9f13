"""workflow-launcher: order.placed -> the order saga's Argo Workflow (pattern 4)."""
