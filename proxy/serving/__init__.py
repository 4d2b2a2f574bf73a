"""How the proxy's processes serve HTTP: the gunicorn worker that keeps probes apart from forwarding."""
