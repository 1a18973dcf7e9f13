"""`playbook`: a command-line client of a knative-playbook platform (make dev, compose, cluster)."""
