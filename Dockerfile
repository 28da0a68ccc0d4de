# recsvc: the recommendation service under gunicorn. Build: docker build -t recsvc .
# Run:   docker run -p 8000:8000 -v "$PWD/models:/models:ro" -e RECSVC_STORE_URL=redis://redis:6379/0 recsvc
# The model registry (folders written by `recsvc-train fit`, plus models/aliases/) is mounted at /models.

# -- build stage: wheels for the project and every dependency (a compiler only lives here)
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY recsvc ./recsvc
COPY training ./training
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime stage
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    RECSVC_MODELS_DIR=/models \
    RECSVC_EVENT_LOG=/data/recsvc-events.jsonl \
    RECSVC_KEYS_FILE=/data/recsvc-keys.json \
    RECSVC_BIND=0.0.0.0:8000 \
    RECSVC_WORKERS=2
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin recsvc
COPY --from=build /wheels /wheels
# /app/recsvc points at the installed package, so the documented command line
# `gunicorn -c recsvc/gunicorn.conf.py recsvc.wsgi:app` works from WORKDIR /app unchanged.
RUN pip install --no-cache-dir --no-index --find-links=/wheels recsvc \
    && rm -rf /wheels \
    && mkdir -p /app /models /data \
    && ln -s "$(python -c 'import os, recsvc; print(os.path.dirname(recsvc.__file__))')" /app/recsvc \
    && test -f /app/recsvc/gunicorn.conf.py \
    && chown recsvc:recsvc /models /data
WORKDIR /app
USER recsvc
# /data: the embedded store's event log (fsynced before each 202; with RECSVC_STORE_URL=redis://...
# the live state is in Redis) and the API keys file: make keys with the same volume,
# `docker run --rm -v recsvc-data:/data recsvc recsvc keys create --role admin` (set RECSVC_KEYS_SECRET
# on both, or its generated secret sits beside the keys in /data).
VOLUME /models /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('RECSVC_BIND', '0.0.0.0:8000').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
CMD ["gunicorn", "-c", "recsvc/gunicorn.conf.py", "recsvc.wsgi:app"]
