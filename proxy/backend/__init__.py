"""Calls to the inference backend: the client for residency, smoke tests and stats, and forwarding."""
