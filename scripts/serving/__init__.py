"""Serving: the production supervisor, the test harness, the processes both start, the nginx configuration and the archive builder."""
