"""The dependency audit (.ci/audit, run by .ci/run): requirements.lock pins exactly the installed tree of
pyproject's dependencies and test extras; an unexplained known vulnerability fails; an audit that could
not happen (no network, or pip-audit skipping dependencies it could not look up) is said loudly and is
never reported as a pass."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from importlib.machinery import SourceFileLoader

from tests.service import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUDIT = os.path.join(ROOT, ".ci", "audit")


def ci_audit() -> types.ModuleType:
    """.ci/audit as a module (it has no .py suffix)."""
    loader = SourceFileLoader("ci_audit", AUDIT)
    module = types.ModuleType(loader.name)
    module.__file__ = AUDIT
    loader.exec_module(module)
    return module


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, AUDIT, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, check=False)


def test_the_lock_pins_exactly_the_installed_dependency_tree():
    p = run("--check-lock")
    assert p.returncode == 0, p.stdout + p.stderr
    lock = ci_audit().read_lock()
    for name in ("flask", "numpy", "redis", "gunicorn", "pip-audit", "pytest"):
        assert lock[name]  # runtime and test dependencies alike, each at one exact version


def test_an_unreachable_vulnerability_service_is_a_loud_skip_not_a_pass():
    p = run(RECSVC_AUDIT_SERVICE=f"http://127.0.0.1:{free_port()}/pypi")  # nothing listens there
    assert p.returncode == 0, p.stdout + p.stderr
    assert "DEPENDENCY AUDIT SKIPPED" in p.stdout and "NOT checked" in p.stdout
    assert "no unexplained known vulnerability" not in p.stdout and "No known vulnerabilities" not in p.stdout


def test_the_verdict_fails_on_an_unexplained_vulnerability_and_names_what_was_not_audited():
    verdict = ci_audit().verdict
    vuln = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fix_versions": ["9.9"]}
    report = {"dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "werkzeug", "version": "3.1.9", "vulns": [vuln]},
        {"name": "lightfm-next", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ]}
    code, lines = verdict(report, {})
    assert code == 1 and any(x.startswith("VULNERABLE werkzeug==3.1.9: PYSEC-2099-1") for x in lines)
    assert "NOT AUDITED (1): lightfm-next" in lines
    code, lines = verdict(report, {"CVE-2099-0001": "only the debugger is affected; it is never enabled"})
    assert code == 0 and any("accepted: only the debugger" in x for x in lines)
    assert lines[0] == "pip-audit: 2 of 3 locked dependencies audited"
    # what pip-audit itself calls a pass when every lookup failed
    code, lines = verdict({"dependencies": [{"name": "flask", "skip_reason": "not found"}]}, {})
    assert code == 0 and lines[0] == "pip-audit: 0 of 1 locked dependencies audited" and "NOT AUDITED" in lines[1]
