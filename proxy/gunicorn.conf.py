"""Gunicorn settings for the proxy. Command-line flags (--bind, ...) win over these, as usual.

One worker process: the pull registry (running downloads, queue, subscribers) lives in it.
Threads give concurrency; a file lock in MODELS_DIR guards against other processes and replicas.
"""
import os

bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"]
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("PROXY_THREADS", "32"))
# gthread's timeout is the worker heartbeat, not a request limit, so a pull stream of an hour is fine.
timeout = 120
keepalive = 75
# Time for running pulls to save their progress after SIGTERM (the pod's grace period is longer).
graceful_timeout = int(os.environ.get("PROXY_GRACEFUL_TIMEOUT_S", "20"))
# Read-only root filesystems: the heartbeat file goes to memory, no control socket is created.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Never write query strings (signed URLs, tokens) into the access log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def worker_exit(server, worker):
    """Stop running pulls so each saves its progress for the next start to resume."""
    app = getattr(worker, "wsgi", None)
    registry = getattr(app, "extensions", {}).get("pulls") if app is not None else None
    if registry is not None:
        registry.shutdown()
