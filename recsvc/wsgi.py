"""The WSGI entry point for gunicorn: `gunicorn -c recsvc/gunicorn.conf.py recsvc.wsgi:app`.
The only module-level app; configuration comes from the RECSVC_* environment variables."""

import sys

from recsvc.app import create_app
from recsvc.config import ConfigError

try:
    app = create_app()
except ConfigError as e:
    print(f"recsvc: {e.message}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None  # gunicorn's "worker failed to boot": the master stops, no retry loop
