"""gunicorn settings for recsvc: `gunicorn -c recsvc/gunicorn.conf.py recsvc.wsgi:app`
(in an installed package: `-c $(python -c 'import recsvc,os;print(os.path.dirname(recsvc.__file__))')/gunicorn.conf.py`).

gunicorn runs this file in the master before any worker imports the app, which is what makes the
environment set here reach numpy and prometheus_client in every worker:
- one BLAS thread per worker (default BLAS threading in each sync worker oversubscribes the cores;
  measured 2.3x slower here);
- PROMETHEUS_MULTIPROC_DIR: a fresh folder per server start, so /metrics adds up all workers;
- RECSVC_RUNTIME_DIR: lets a `POST /v1/models/reload` answered by one worker reach its siblings.

preload_app stays False: the model is memory-mapped, so its pages are shared by the workers either
way, and each worker opening its own Redis connections and model after the fork keeps nothing
shared by accident. The cost is one checksum pass per worker start.

Environment: RECSVC_BIND (default 0.0.0.0:8000), RECSVC_WORKERS or WEB_CONCURRENCY (default 2),
RECSVC_TIMEOUT_S (default 30), RECSVC_ACCESS_LOG (`-` for stderr; default off: the app already logs
one JSON line per request), RECSVC_LOG_LEVEL.
"""

import os
import re
import shutil
import tempfile

from gunicorn import glogging, util

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = os.environ.get("RECSVC_BLAS_THREADS", "1")

_runtime = tempfile.mkdtemp(prefix="recsvc-gunicorn-")
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(_metrics_dir, exist_ok=True)
    for _f in os.listdir(_metrics_dir):  # values of a previous run would be added to this one's
        if _f.endswith(".db"):
            os.unlink(os.path.join(_metrics_dir, _f))
else:
    _metrics_dir = os.path.join(_runtime, "metrics")
    os.makedirs(_metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
os.environ.setdefault("RECSVC_RUNTIME_DIR", os.path.join(_runtime, "run"))
os.makedirs(os.environ["RECSVC_RUNTIME_DIR"], exist_ok=True)
for _f in ("served-model", "refused-models"):  # a start serves RECSVC_MODEL and verifies it afresh
    try:
        os.unlink(os.path.join(os.environ["RECSVC_RUNTIME_DIR"], _f))
    except FileNotFoundError:
        pass

bind = os.environ.get("RECSVC_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("RECSVC_WORKERS") or os.environ.get("WEB_CONCURRENCY") or 2)
worker_class = "sync"
preload_app = False
timeout = int(os.environ.get("RECSVC_TIMEOUT_S", "30"))
graceful_timeout = timeout
keepalive = 5
proc_name = "recsvc"
control_socket_disable = True  # gunicorn 27's default socket path is per user: two servers would clash

accesslog = os.environ.get("RECSVC_ACCESS_LOG") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus request_id=%({x-request-id}o)s'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "recsvc.logging.JsonFormatter"}},
    "filters": {"redact": {"()": "recsvc.logging.RedactIdentifiers"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
                   "filters": ["redact"]}
    },
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {
            "handlers": ["stderr"],
            "level": os.environ.get("RECSVC_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def _json_write_error(sock, status_int, reason, mesg):
    """gunicorn answers malformed requests itself (request line too long, bad headers) with an HTML
    page; the contract says errors are never HTML, so the same answer goes out as JSON."""
    from recsvc.http_errors import server_error_body

    body = server_error_body(status_int, mesg or reason)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin1")
    util.write_nonblock(sock, head + body)


util.write_error = _json_write_error  # the one call site is gunicorn.workers.base.Worker.handle_error


class JsonLogger(glogging.Logger):
    """gunicorn's logger, writing the access log only when RECSVC_ACCESS_LOG asks for it (a logging
    config alone would turn it on, and the app already logs one JSON line per request)."""

    @property
    def access_log_enabled(self):
        return bool(self.cfg.accesslog)

    def access(self, resp, req, environ, request_time):
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)

    def atoms(self, resp, req, environ, request_time):
        """No identifier value and no key in the access log, whatever its format: the value of
        DELETE /v1/customers/{id}/identifiers/{type}/{value} is masked, Authorization is dropped."""
        atoms = super().atoms(resp, req, environ, request_time)
        for k in ("r", "U"):
            if isinstance(atoms.get(k), str):
                atoms[k] = _IDENTIFIER_IN_PATH.sub(r"\1***", atoms[k])
        for k in ("{authorization}i", "{http_authorization}e", "{raw_uri}e", "{path_info}e", "{request_uri}e"):
            atoms.pop(k, None)
        atoms["u"] = "-"
        return atoms


_IDENTIFIER_IN_PATH = re.compile(r"(/identifiers/[^/?\s]+/)[^?\s]+")


logger_class = JsonLogger


def post_worker_init(worker):
    """The app, its schemas and the model's id maps are loaded and live as long as the worker: move them
    out of the garbage collector's way (fewer long pauses in the latency tail)."""
    import gc

    gc.freeze()


def child_exit(server, worker):
    """A dead worker's live gauges (the model it served) must stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):
    shutil.rmtree(_runtime, ignore_errors=True)
