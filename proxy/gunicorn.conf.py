"""Gunicorn settings for the proxy. Command-line flags (--bind, ...) win over these, as usual.

One worker process: the pull registry (running downloads, queue, subscribers) lives in it.
Threads give concurrency; a file lock in MODELS_DIR guards against other processes and replicas.
"""
import os
import signal
import threading

from core.serving import ACCESS_LOG_FORMAT
from proxy.services import EXTENSION
from proxy.settings import Settings

proxy_settings = Settings.from_env()  # HOST, PORT, PROXY_THREADS, ... (proxy/settings.py describes each)
bind = [f"{proxy_settings.host}:{proxy_settings.port}"]
workers = 1
# gthread, but a request gets a thread only once it has arrived, and probes get threads of their own, so
# half-sent requests and any number of streams never hold up /livez, /readyz or /v1/health (proxy/serving/worker.py).
worker_class = "proxy.serving.worker.ProbeFirstWorker"
# Probes must never wait behind forwarded streams, each of which holds a thread for as long as the backend
# answers. So forwarding may take at most FORWARD_MAX_IN_FLIGHT threads (proxy/routes/forward.py answers
# the rest 503 at once), and PROXY_THREADS more serve everything else: probes, API calls, pull streams.
# (A queue of forwarded requests would hold threads just the same; the backend queues them on its model.)
threads = proxy_settings.forward_max_in_flight + proxy_settings.proxy_threads
# gthread's timeout is the worker heartbeat, not a request limit, so a pull stream of an hour is fine.
timeout = 120
keepalive = 75
# Time for running pulls to save their progress after SIGTERM (the pod's grace period is longer).
graceful_timeout = proxy_settings.graceful_timeout_s
SAVE_WAIT_S = 5.0  # at exit, how long stopped pulls get to save their progress
# Read-only root filesystems: the heartbeat file goes to memory, no control socket is created.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = proxy_settings.log_level
access_log_format = ACCESS_LOG_FORMAT  # no query strings (signed URLs, tokens)


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
    """Stop running pulls and wait a little for each to save its progress for the next start to resume;
    write the last-used times not written yet."""
    _stop_pulls(worker, wait_s=SAVE_WAIT_S)
    services = _services(worker)
    if services is not None:
        services.usage.flush()


def _stop_pulls(worker, wait_s: float = 0.0) -> None:
    services = _services(worker)
    if services is not None:
        services.pulls.shutdown(wait_s)


def _services(worker):
    """The worker's app's proxy.services.Services; None before the app is loaded."""
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get(EXTENSION)
