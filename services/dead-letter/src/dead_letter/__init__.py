"""dead-letter: the dead-letter sink of every Trigger; stores, lists, replays and purges."""
