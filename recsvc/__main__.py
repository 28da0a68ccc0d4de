"""`recsvc serve` (development server), `recsvc demo` (synthetic data -> model -> service) and
`recsvc keys` (API keys: create, list, revoke).

Production runs gunicorn instead: `gunicorn -c recsvc/gunicorn.conf.py recsvc.wsgi:app`.
Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys

from recsvc.errors import RecsvcError


def _serve(app, host: str, port: int) -> None:
    from werkzeug.serving import WSGIRequestHandler, run_simple

    from recsvc.http_errors import server_error_body

    class Handler(WSGIRequestHandler):
        """Errors the server answers itself (URI too long, bad request line) in the JSON error shape."""

        def log_request(self, code="-", size="-"):
            """The app already logs one JSON line per request."""

        def send_error(self, code, message=None, explain=None):
            body = server_error_body(code, message or self.responses.get(code, ("error",))[0])
            self.log_error("code %d, message %s", code, message)
            self.send_response(code, message)
            self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)

    run_simple(
        host, port, app, threaded=True, use_reloader=False, use_debugger=False, request_handler=Handler
    )


def cmd_serve(args) -> int:
    from recsvc.app import create_app
    from recsvc.config import Config

    config = Config.from_env(models_dir=args.models_dir, store_url=args.store_url, model=args.model)
    app = create_app(config)
    print(
        f"recsvc serving on http://{args.host}:{args.port} (docs: http://{args.host}:{args.port}/docs)",
        file=sys.stderr,
        flush=True,
    )
    _serve(app, args.host, args.port)
    return 0


def cmd_demo(args) -> int:
    from recsvc.demo import run_demo

    return run_demo(workdir=args.workdir, host=args.host, port=args.port, serve=_serve)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsvc", description="The recsvc recommendation service.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the service with the development server (production: gunicorn)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--models-dir", help="model registry (default RECSVC_MODELS_DIR, then models)")
    s.add_argument(
        "--store-url", help="memory:// or redis://host:port/db (default RECSVC_STORE_URL, then memory://)"
    )
    s.add_argument("--model", help="model id or alias to serve (default RECSVC_MODEL, then champion)")
    s.set_defaults(run=cmd_serve)
    d = sub.add_parser("demo", help="synthetic data -> trained model -> service on the in-memory store")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument(
        "--workdir",
        default=os.path.join(".", "recsvc-demo"),
        help="where data and models go; a model trained there before is reused (default ./recsvc-demo)",
    )
    d.set_defaults(run=cmd_demo)
    from recsvc.security.cli import add_parser as add_keys

    add_keys(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except RecsvcError as e:
        print(f"recsvc {args.command}: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"recsvc {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
