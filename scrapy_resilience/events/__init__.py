"""FailureEvents: the one path that records them (stats, signal, event log) and the event log file."""
