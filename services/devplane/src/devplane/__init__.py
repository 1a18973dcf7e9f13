"""devplane: the local event plane (broker, triggers, cron, workflows) and local servers."""
