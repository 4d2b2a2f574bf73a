"""Gunicorn settings for the proxy. Command-line flags (--bind, ...) win over these, as usual.

One worker process: the pull registry (running downloads, queue, subscribers) lives in it.
Threads give concurrency; a file lock in MODELS_DIR guards against other processes and replicas.
"""
import os
import signal
import threading

from proxy.settings import Settings

bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"]
workers = 1
worker_class = "gthread"
# Probes must never wait behind forwarded streams, each of which holds a thread for as long as the backend
# answers. So forwarding may take at most FORWARD_MAX_IN_FLIGHT threads (proxy/routes/forward.py answers
# the rest 503 at once), and PROXY_THREADS more serve everything else: probes, API calls, pull streams.
# (A queue of forwarded requests would hold threads just the same; the backend queues them on its model.)
threads = Settings.from_env().forward_max_in_flight + int(os.environ.get("PROXY_THREADS") or "16")
# gthread's timeout is the worker heartbeat, not a request limit, so a pull stream of an hour is fine.
timeout = 120
keepalive = 75
# Time for running pulls to save their progress after SIGTERM (the pod's grace period is longer).
graceful_timeout = int(os.environ.get("PROXY_GRACEFUL_TIMEOUT_S", "20"))
SAVE_WAIT_S = 5.0  # at exit, how long stopped pulls get to save their progress
# Read-only root filesystems: the heartbeat file goes to memory, no control socket is created.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Never write query strings (signed URLs, tokens) into the access log.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def post_worker_init(worker):
    """On SIGTERM, stop running pulls at once, then shut down as gunicorn does.

    A pull stream is an in-flight request: without this, the graceful shutdown waits on it (the whole
    download, or graceful_timeout). Stopped pulls save their progress and end their streams with an
    error line, so the worker exits within a second and the next start resumes them.
    """
    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def stop_pulls_then_exit(signum, frame):
        # A thread, not the handler itself: the main thread may hold a lock the registry needs.
        threading.Thread(target=_stop_pulls, args=(worker,), name="stop-pulls", daemon=True).start()
        gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, stop_pulls_then_exit)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn sets it: don't disturb active requests


def worker_exit(server, worker):
    """Stop running pulls and wait a little for each to save its progress for the next start to resume."""
    _stop_pulls(worker, wait_s=SAVE_WAIT_S)


def _stop_pulls(worker, wait_s: float = 0.0) -> None:
    app = getattr(worker, "wsgi", None)
    registry = getattr(app, "extensions", {}).get("pulls") if app is not None else None
    if registry is not None:
        registry.shutdown(wait_s)
