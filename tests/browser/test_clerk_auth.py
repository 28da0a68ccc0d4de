"""The clerk page with API keys on (the conftest's server): sign-in checks the key against the service
(refused, another store's, not a clerk key), a key revoked while signed in sends the clerk back to the
sign-in screen, what the clerk looked up and changed is in the audit trail (never the card number), and
a whole session under the page's Content-Security-Policy logs no violation in Chromium's console."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.browser import ADA, KEYS, STORE, api, wait_until
from tests.service import PYTHON, make_key

pytestmark = pytest.mark.browser
CSP_WORDS = ("Content Security Policy", "Content-Security-Policy", "Refused to", "TrustedHTML", "TrustedScript")


def csp_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if any(w in e["message"] for w in CSP_WORDS)]


def submit_sign_in(page, key: str) -> None:
    page.el("signin-key").send_keys(key)
    page.el("signin-store").send_keys(STORE)
    page.el("signin-submit").click()


@pytest.mark.parametrize("which, message", [
    ("mistyped", "This key is not valid (mistyped or revoked)."),
    ("other_store", "This key belongs to store s2."),
    ("storefront", "This is a storefront key, not a clerk key."),
])
def test_sign_in_checks_the_key_with_the_service(page, which, message):
    key = "rk_000000000000_" + "x" * 43 if which == "mistyped" else KEYS[which]
    submit_sign_in(page, key)
    wait_until(lambda: page.text("signin-error") == message, what=f"sign-in refused: {message}")
    assert page.js("return document.getElementById('workspace').hidden") is True
    assert page.js("return sessionStorage.getItem('recsvc.clerk.session')") is None


def test_a_key_revoked_while_signed_in_sends_the_clerk_back_to_sign_in(page, clerk_server, tmp_path):
    keys_file = os.path.join(os.path.dirname(clerk_server.log_path), "keys.json")
    key = make_key(keys_file, "clerk", store=STORE, name="tablet-to-revoke")
    page.sign_in(key=key)
    page.find(ADA["card"])
    page.wait_offers(ADA["customer_id"])
    p = subprocess.run([PYTHON, "-m", "recsvc", "keys", "revoke", "tablet-to-revoke", "--keys-file", keys_file],
                       check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    page.el("offers-refresh").click()  # the next call carries the revoked key
    wait_until(lambda: page.text("signin-error") == "The key was refused. Sign in again.", timeout=20,
               what="signed out after revocation")
    assert page.js("return document.getElementById('workspace').hidden") is True


def test_the_clerks_lookups_and_consent_changes_are_in_the_audit_trail(page, clerk_server):
    page.sign_in(locale="en-GB", clerk="staff-7")
    page.find(ADA["card"])
    page.wait_offers(ADA["customer_id"])
    page.el("consent-withdraw").click()
    wait_until(lambda: page.text("offers-notice").startswith("Not personalised"), what="consent withdrawn")
    page.el("consent-give").click()
    wait_until(lambda: page.text("offers-notice").startswith("Personalised"), what="consent given again")
    status, js = api(clerk_server.base, "GET", f"/v1/audit?customer_id={ADA['customer_id']}&store_id={STORE}")
    assert status == 200, js
    mine = [e for e in js["entries"] if e["key_name"] == "tablet-s1"]
    actions = [e["action"] for e in mine]
    assert "recommendations.by_identifier" in actions and "customer.view" in actions
    assert actions.count("consent.change") >= 2
    lookup = next(e for e in mine if e["action"] == "recommendations.by_identifier")
    assert lookup["identifier_type"] == "loyalty_card" and lookup["found"] is True
    assert lookup["customer_id"] == ADA["customer_id"] and lookup["role"] == "clerk"
    assert lookup["key_store_id"] == STORE and lookup["at"].endswith("Z")
    change = next(e for e in mine if e["action"] == "consent.change")
    assert change["personalisation"] is True and change["source"] == "clerk" and change["channel"] == "store"
    assert ADA["card"] not in json.dumps(js) and KEYS["clerk"] not in json.dumps(js)
    # the clerk's own key may not read the trail
    from tests.service import bearer, request

    status, js = request("GET", clerk_server.base + "/v1/audit", headers=bearer(KEYS["clerk"]))
    assert status == 403 and js["error"]["code"] == "forbidden"


def test_a_whole_session_under_the_policy_logs_no_violation(page, clerk_server):
    driver = page.driver
    driver.get_log("browser")
    page.sign_in(locale="en-GB")
    page.find(ADA["card"])
    offers = page.wait_offers(ADA["customer_id"])
    page.tap(offers[0]["item_id"], "shown")
    wait_until(lambda: page.queued() == [], what="tap delivered")
    page.find(ADA["email"], kind="email")
    page.wait_offers(ADA["customer_id"])
    page.el("similar-value").send_keys("i00002\n")
    wait_until(lambda: page.js("return document.querySelectorAll('#similar-list > li').length") > 0, what="similar")
    page.el("sign-out").click()
    wait_until(lambda: page.js("return !document.getElementById('signin').hidden"), what="signed out")
    assert csp_messages(driver) == []
    assert page.console_errors() == []
    # the console does report violations: an inline style is refused under this policy
    page.js("document.body.setAttribute('style', 'outline: 1px solid red')")
    wait_until(lambda: csp_messages(driver), what="the positive control's violation")
