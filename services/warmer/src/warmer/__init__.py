"""warmer: the optional scheduled job that pings functions so that one pod of each stays warm."""
