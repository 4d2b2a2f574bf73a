"""Pushes: an installed model published to an OCI registry as Docker Model Runner's artifact (artifact, upload, service)."""
