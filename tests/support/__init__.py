"""Test support shared by the test folders: stand-in servers, in-process apps, polling."""
