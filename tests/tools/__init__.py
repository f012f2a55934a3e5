"""Test and benchmark tools (not shipped in the Lambda package): the TCP latency proxy."""
