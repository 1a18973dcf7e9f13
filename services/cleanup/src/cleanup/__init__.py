"""cleanup: the scheduled job that deletes expired image records and the objects they own."""
