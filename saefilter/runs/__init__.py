"""Drivers of the commands that stream a dataset through the scorer: `score` (local and Ray engines) and `check`."""
