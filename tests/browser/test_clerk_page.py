"""The clerk's tablet in a real headless Chromium against a real `recsvc serve`: sign in, find the
customer (card scan, hashed email, hashed phone), consent, offers with reasons and availability,
offer taps reaching the API, offline queueing delivered exactly once, recent activity, similar items,
French and English, accessible names, contrast and tap targets. Screenshots of each state at both
tablet sizes go to tests/artifacts/."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
import uuid

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from recsvc.clerk import STATIC_DIR
from tests.browser import (
    ADA,
    BOB,
    PAGE_AUDIT_JS,
    activity,
    api,
    screenshot,
    set_offline,
    sha256,
    unnamed_controls,
    wait_until,
)
from tests.service import request

pytestmark = pytest.mark.browser


def assert_accessible(page) -> None:
    """Every control named (Chromium's accessibility tree), AA contrast, 44x44 px tap targets."""
    assert unnamed_controls(page.driver) == []
    audit = page.js(PAGE_AUDIT_JS)
    assert audit["contrast"] == [], audit["contrast"]
    assert audit["small"] == [], audit["small"]


def events_of(base: str, customer_id: str, recommendation_id: str, item_id: str, event: str) -> list[dict]:
    """The customer's events of one kind on one offer of one selection, as the API reports them."""
    return [
        e
        for e in activity(base, customer_id)
        if (e.get("event"), e.get("item_id"), e.get("recommendation_id")) == (event, item_id, recommendation_id)
    ]


def test_page_is_served_with_a_strict_policy(clerk_server):
    base = clerk_server.base
    status, html = request("GET", base + "/clerk/", headers={"Accept": "text/html"})
    assert status == 200 and re.search(r"<input\b", html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"<style\b|\sstyle=", html), "inline style"
    with urllib.request.urlopen(base + "/clerk/") as r:
        headers = r.headers
        etag = headers["ETag"]
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and "'unsafe-eval'" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-cache"
    req = urllib.request.Request(base + "/clerk/", headers={"If-None-Match": etag})
    try:
        urllib.request.urlopen(req)
        revalidated = None
    except urllib.error.HTTPError as e:
        revalidated = e.code
    assert revalidated == 304
    kinds = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html",
             ".webmanifest": "application/manifest+json"}
    for name in sorted(os.listdir(STATIC_DIR)):
        with urllib.request.urlopen(f"{base}/clerk/{name}") as r:
            ctype = kinds[os.path.splitext(name)[1]]
            assert r.headers["Content-Type"].startswith(ctype) and r.headers["Content-Security-Policy"] == csp
            body = r.read().decode()
        # Text goes into the DOM as text: no HTML sinks, nothing evaluated.
        assert not re.search(r"(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function", body)
    status, js = request("GET", base + "/clerk/%2e%2e%2fapp.py")
    assert status == 404 and js["error"]["code"] == "not_found"


def test_sign_in_screen(page):
    assert page.js("return document.documentElement.lang") == "en"
    assert page.js("return import('/clerk/i18n.js').then((m) => m.missingKeys())") == []
    page.el("signin-submit").click()
    assert page.text("signin-error") == "Enter the store's clerk key."
    assert_accessible(page)
    screenshot(page.driver, "signin")
    assert page.console_errors() == []


def test_card_scan_shows_consent_offers_reasons_availability_and_activity(page, clerk_server):
    page.sign_in(locale="en-GB")
    assert page.text("store-badge") == f"Store {page.store} · English"
    page.find(ADA["card"])  # a scanner types the digits then Enter into the focused field
    offers = page.wait_offers(ADA["customer_id"])
    assert len(offers) == 6
    assert page.text("consent-state") == "Consent given: personalised offers"
    assert page.text("offers-notice").startswith("Personalised")
    assert all(o["reason"].startswith("Why:") and len(o["reason"]) > 10 for o in offers)
    by_item = {o["item_id"]: o["availability"] for o in offers}
    assert by_item["i00002"] == "In stock here: 3"
    kinds = {o["availability_kind"].split()[-1] for o in offers}
    assert {"avail-take_home", "avail-order_for_delivery", "avail-pick_up_elsewhere"} <= kinds
    # The same selection as the API gives this customer in this store.
    status, js = api(clerk_server.base, "POST", "/v1/recommendations", {
        "customer": {"customer_id": ADA["customer_id"]},
        "context": {"channel": "store", "store_id": page.store, "locale": "en-GB"}, "n": 6})
    assert status == 200 and [o["item_id"] for o in offers] == [x["item_id"] for x in js["items"]]
    # Recent activity across channels, in words.
    acts = page.js("return [...document.querySelectorAll('#activity-list li')].map((li) => li.textContent)")
    assert any(a.startswith("Viewed") and "on the app" in a and "yesterday" in a for a in acts), acts
    assert any(a.startswith("Bought City sling online") and "last week" in a for a in acts), acts
    assert any(a.startswith("Returned") and "in store s2" in a for a in acts), acts
    assert any("to the basket in store" in a and "hours ago" in a for a in acts), acts
    chips = page.js("return [...document.querySelectorAll('#customer-identifiers li')].map((li) => li.textContent)")
    assert any(c.startswith("Card") and c.endswith("0002") for c in chips), chips
    assert not any(ADA["card"] in c for c in chips)
    assert_accessible(page)
    page.hide_toast()
    screenshot(page.driver, "offers")
    screenshot(page.driver, "activity", scroll_to="activity-card")
    assert page.console_errors() == []


def test_typed_email_is_hashed_in_the_page_and_accept_reaches_the_api(page, clerk_server):
    page.sign_in(locale="en-GB", clerk="staff-42")
    page.sent_bodies()
    page.find(ADA["email"], kind="email")
    offers = page.wait_offers(ADA["customer_id"])
    sent = page.sent_bodies()
    assert any(sha256("ada.lovelace@example.com") in b for b in sent), sent
    assert not any("example.com" in b.lower() or "lovelace" in b.lower() for b in sent)
    item = offers[0]["item_id"]
    page.tap(item, "accepted")
    wait_until(lambda: "recorded" in page.offers()[0]["status"], what="accepted recorded")
    assert page.queued() == []
    posted = [b for b in page.sent_bodies() if "/v1/events" in b]
    assert len(posted) == 1 and '"offer_accepted"' in posted[0] and '"type":"clerk","id":"staff-42"' in posted[0]
    assert '"recommendation_id":"r-' in posted[0]
    rec_id = re.search(r'"recommendation_id":"(r-[^"]+)"', posted[0]).group(1)
    found = events_of(clerk_server.base, ADA["customer_id"], rec_id, item, "offer_accepted")
    assert len(found) == 1 and found[0]["channel"] == "store"
    # The page re-reads the customer: the accepted offer is now in their recent activity.
    title = offers[0]["title"]
    wait_until(lambda: page.js("return document.getElementById('activity-list').textContent").count(
        f"Accepted the offer {title} in store with a clerk") == 1, what="accepted offer in the activity")
    # A second tap on the same button records nothing more.
    page.tap(item, "accepted")
    assert page.queued() == [] and not [b for b in page.sent_bodies() if "/v1/events" in b]


def test_phone_in_a_french_store(page):
    page.sign_in(locale="fr-FR")
    assert page.js("return document.documentElement.lang") == "fr"
    page.find(ADA["phone"], kind="phone")  # "06 12 34 56 78" -> +33612345678 -> SHA-256
    offers = page.wait_offers(ADA["customer_id"])
    assert page.text("offers-title") == "Offres pour ce client"
    assert page.text("consent-state").startswith("Consentement donné")
    assert any(o["availability"] == "En stock ici : 3" for o in offers)
    assert all(o["reason"].startswith("Pourquoi :") for o in offers)
    assert page.el("idtype-phone").is_selected()
    assert_accessible(page)
    page.hide_toast()
    screenshot(page.driver, "french")
    page.find("00000000", kind="card")
    wait_until(lambda: page.text("find-error"), what="not found message")
    assert page.text("find-error").startswith("Aucun client trouvé pour ce numéro de carte")
    assert page.js("return document.getElementById('customer-card').hidden") is True  # no stale customer
    assert page.console_errors() == []


def test_without_consent_general_offers_say_why_and_consent_is_recorded(page, clerk_server):
    page.sign_in(locale="en-GB")
    # A card scanned while no field has focus: the scanner's digits + Enter still find the customer.
    page.js("document.activeElement.blur()")
    ActionChains(page.driver).send_keys(BOB["card"] + Keys.ENTER).perform()
    page.wait_offers(BOB["customer_id"])
    assert page.text("consent-state") == "No consent: general offers only"
    assert page.text("offers-notice").startswith("Not personalised: the customer has not agreed")
    assert page.el("consent-withdraw").get_attribute("aria-pressed") == "true"
    assert_accessible(page)
    page.hide_toast()
    screenshot(page.driver, "no-consent")
    page.el("consent-give").click()
    wait_until(lambda: page.text("offers-notice").startswith("Personalised"), what="personalised after consent")
    status, js = api(clerk_server.base, "GET", f"/v1/customers/{BOB['customer_id']}")
    assert status == 200, js
    consent = js["consent"]
    assert (consent.get("personalisation", consent.get("granted")) is True and consent["source"] == "clerk"
            and consent["channel"] == "store")
    page.el("consent-withdraw").click()
    wait_until(lambda: page.text("offers-notice").startswith("Not personalised"), what="withdrawn again")
    assert page.text("consent-state") == "No consent: general offers only"


def test_offline_keeps_the_selection_and_delivers_queued_taps_once(page, clerk_server):
    base = clerk_server.base
    page.sign_in(locale="en-GB")
    page.find(ADA["card"])
    offers = page.wait_offers(ADA["customer_id"])
    set_offline(page.driver, True)
    wait_until(lambda: page.text("net-text") == "Offline", what="offline pill")
    page.tap(offers[1]["item_id"], "accepted")
    page.tap(offers[2]["item_id"], "declined")
    queued = wait_until(lambda: len(page.queued()) == 2 and page.queued(), what="two queued taps")
    assert len({e["event_id"] for e in queued}) == 2
    assert all(e["actor"]["type"] == "clerk" and e["customer"] == {"customer_id": ADA["customer_id"]} for e in queued)
    rec_id = queued[0]["recommendation_id"]
    wait_until(lambda: "2 taps are saved" in page.text("offline-banner"), what="banner counts the taps")
    # A lookup while offline keeps the last selection on screen, with the time it was received.
    page.find(BOB["card"])
    wait_until(lambda: page.text("find-error") == "Offline: the service cannot be reached.", what="offline error")
    assert [o["item_id"] for o in page.offers()] == [o["item_id"] for o in offers]
    assert page.text("offers-stale").startswith("Last selection, received")
    assert "saved, will be sent when online" in page.offers()[1]["status"]
    assert events_of(base, ADA["customer_id"], rec_id, offers[1]["item_id"], "offer_accepted") == []
    page.hide_toast()
    screenshot(page.driver, "offline")
    screenshot(page.driver, "offline-offers", scroll_to="offers-card")

    set_offline(page.driver, False)
    wait_until(lambda: page.queued() == [], timeout=20, what="queue delivered")
    wait_until(lambda: page.text("offline-banner") == "", what="banner gone")
    assert "recorded" in page.offers()[1]["status"] and "recorded" in page.offers()[2]["status"]
    assert len(events_of(base, ADA["customer_id"], rec_id, offers[1]["item_id"], "offer_accepted")) == 1
    assert len(events_of(base, ADA["customer_id"], rec_id, offers[2]["item_id"], "offer_declined")) == 1

    # The answer to a delivery got lost and the page sends the same event again: it counts once.
    page.js("localStorage.setItem('recsvc.clerk.events.v1', JSON.stringify([arguments[0]]));"
            "window.dispatchEvent(new Event('online'));", queued[0])
    wait_until(lambda: page.queued() == [], what="retry delivered")
    status, js = api(base, "POST", "/v1/events", {"events": [queued[1]]})
    assert status == 202 and js["accepted"] == 0 and js["duplicates"] == 1
    assert len(events_of(base, ADA["customer_id"], rec_id, offers[1]["item_id"], "offer_accepted")) == 1
    assert len(events_of(base, ADA["customer_id"], rec_id, offers[2]["item_id"], "offer_declined")) == 1
    assert [e for e in page.console_errors() if "ERR_INTERNET_DISCONNECTED" not in e] == []


def test_similar_items_for_an_item_the_customer_holds(page):
    page.sign_in(locale="en-GB")
    field = page.el("similar-value")
    field.send_keys("i00002\n")  # scanned or typed, then Enter
    items = wait_until(lambda: page.js(
        "return [...document.querySelectorAll('#similar-list > li')].map((li) => li.textContent)"), what="similar")
    assert 1 <= len(items) <= 4 and all(re.search(r"In stock here|Order for home delivery|Pick up", x) for x in items)
    assert not any("i00002" in x for x in items)  # the item itself is not offered as similar
    assert page.text("similar-for").startswith("Similar to")
    assert_accessible(page)
    screenshot(page.driver, "similar", scroll_to="similar-card")
    field.clear()
    field.send_keys(f"nope-{uuid.uuid4().hex[:6]}\n")
    wait_until(lambda: page.text("similar-error").startswith("Unknown item"), what="unknown item message")
    assert page.driver.find_elements(By.CSS_SELECTOR, "#similar-list > li") == []
    errors = page.console_errors()
    assert all("404" in e for e in errors), errors  # only the refused lookup of the unknown item
