"""Helpers for the browser tests of the clerk page: a test model with readable titles, demo customers
seeded through the public HTTP API only, a headless Chromium driven by Selenium, and the page-side
checks (accessible names, contrast, tap targets) run inside the browser."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from recsvc.artifact.manifest import Manifest, utcnow
from recsvc.artifact.registry import Registry
from recsvc.artifact.write import write_model
from tests.modelkit import build_arrays
from tests.service import request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")
SIZES = {"landscape": (1280, 800), "portrait": (800, 1280)}

STORE = "s1"
KEYS: dict[str, str] = {}  # role -> API key of the test server (made by conftest with `recsvc keys create`)
CATEGORIES = ("Running shoes", "Rain jackets", "Backpacks", "Knitwear")
NAMES = (
    ("Trail runner", "Road racer", "Cushioned trainer", "Lightweight flat", "Stability shoe",
     "Waterproof trail shoe", "Minimal runner", "Tempo trainer", "Carbon racer", "Recovery slide",
     "Grip trail shoe", "Daily trainer", "Track spike", "Winter runner", "Walking shoe"),
    ("Packable rain shell", "Insulated parka", "Windbreaker", "Softshell jacket", "Hooded anorak",
     "Trench coat", "Cycling jacket", "Down vest", "Fleece jacket", "Ski jacket", "Rain poncho",
     "Quilted jacket", "Storm jacket", "Running vest", "Field jacket"),
    ("Daypack 20 L", "Hiking pack 35 L", "Laptop backpack", "Roll-top bag", "Running vest pack",
     "Travel pack 40 L", "Hydration pack", "City sling", "Kids' backpack", "Camera pack", "Duffel 50 L",
     "Bike messenger", "Summit pack 28 L", "Weekender", "Waist pack"),
    ("Merino crew jumper", "Cable-knit cardigan", "Wool beanie", "Roll-neck sweater", "Fisherman jumper",
     "Zip-neck sweater", "Cashmere scarf", "Alpaca cardigan", "Knitted gloves", "Cotton V-neck",
     "Chunky snood", "Lambswool crew", "Ribbed hat", "Knit vest", "Hooded knit"),
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# The demo customers: what the clerk types, and what the service holds (hashed as the page hashes).
ADA = {
    "customer_id": "c00002",
    "card": "049700000002",
    "email": "Ada.Lovelace@Example.com ",  # typed as a clerk might: the page trims and lower-cases
    "phone": "06 12 34 56 78",  # national format in a fr-FR store -> +33612345678
}
BOB = {"customer_id": "c00003", "card": "049700000003"}  # has withdrawn consent


def make_clerk_model(models_dir: str) -> str:
    """The modelkit test model (60 items, 4 categories, stores s1/s2) with shop-like titles."""
    arrays = build_arrays()
    n = len(arrays["item_ids"])
    arrays["item_title"] = np.array([NAMES[i % 4][(i // 4) % 15] for i in range(n)])
    arrays["category_names"] = np.array(CATEGORIES)
    when = utcnow()
    mid = f"als-{when.strftime('%Y%m%dT%H%M%SZ')}-c1e4c0"
    man = Manifest(
        model_id=mid,
        learner="als",
        created_at=when.isoformat(),
        params={"factors": 8},
        seed=0,
        scoring={
            "kind": "factors",
            "foldin": {"regularization": 0.1, "alpha": 1.0},
            "event_weights": {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0,
                              "return": -8.0, "rating": 4.0, "offer_shown": 0.0,
                              "offer_accepted": 6.0, "offer_declined": -2.0},
        },
        data={"fingerprint": "clerk-test", "counts": {"items": n}},
        metrics={"overall": {"ndcg@10": 0.3}, "per_channel": {}},
    )
    write_model(models_dir, man, arrays)
    Registry(models_dir).set_alias("champion", mid)
    return mid


def api(base: str, method: str, path: str, body=None):
    """The public API as the back office uses it (an admin key: seeding writes stock)."""
    status, js = request(method, base + path, body, headers={"Authorization": f"Bearer {KEYS['admin']}"})
    return status, js


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).isoformat().replace("+00:00", "Z")


def seed(base: str) -> None:
    """Identifiers, consent, store stock and some cross-channel history, through the public API."""
    for who, links in (
        (ADA, [("loyalty_card", ADA["card"]), ("email_sha256", sha256("ada.lovelace@example.com")),
               ("phone_sha256", sha256("+33612345678"))]),
        (BOB, [("loyalty_card", BOB["card"])]),
    ):
        for type_, value in links:
            status, js = api(base, "POST", f"/v1/customers/{who['customer_id']}/identifiers",
                             {"type": type_, "value": value})
            assert status in (200, 201), js
    for who, granted, channel in ((ADA, True, "web"), (BOB, False, "app")):
        status, js = api(base, "PUT", f"/v1/customers/{who['customer_id']}/consent",
                         {"personalisation": granted, "source": "customer", "channel": channel})
        assert status in (200, 204), js
    # In stock here: i00002 (3) and i00022; everything else 0 here (pick up elsewhere or order).
    status, js = api(base, "PUT", f"/v1/stores/{STORE}/stock",
                     {"items": [{"item_id": "i00002", "quantity": 3}, {"item_id": "i00022", "quantity": 5},
                                {"item_id": "i00001", "quantity": 2}], "replace": True})
    assert status == 200, js
    history = [
        ("view", "app", None, "i00034", timedelta(days=1, hours=2)),
        ("purchase", "web", None, "i00030", timedelta(days=8)),
        ("return", "store", "s2", "i00038", timedelta(days=3)),
        ("add_to_cart", "store", STORE, "i00042", timedelta(hours=2)),
    ]
    events = [
        {"event_id": f"seed-{uuid.uuid4().hex}", "customer": {"customer_id": ADA["customer_id"]}, "item_id": item,
         "event": event, "channel": channel, "timestamp": _iso(ago),
         **({"store_id": store} if store else {}), "actor": {"type": "customer", "id": ADA["customer_id"]}}
        for event, channel, store, item, ago in history
    ]
    status, js = api(base, "POST", "/v1/events", {"events": events})
    assert status == 202 and js["accepted"] == len(events), js


def activity(base: str, customer_id: str) -> list[dict]:
    """The customer's recent events as GET /v1/customers/{id} shows them."""
    status, js = api(base, "GET", f"/v1/customers/{customer_id}")
    assert status == 200, js
    for key in ("recent_activity", "activity", "recent_events", "events"):
        if isinstance(js.get(key), list):
            return js[key]
    raise AssertionError(f"no recent activity list in GET /v1/customers/{customer_id}: {sorted(js)}")


def new_driver(profile_dir: str):
    """Headless Debian Chromium with a fresh profile; console messages kept for the CSP check."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--no-first-run", "--disable-sync", "--disable-component-update",
                "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--window-size=1280,800", "--lang=en-GB", f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))


def set_viewport(driver, size: str) -> None:
    w, h = SIZES[size]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False})


def set_offline(driver, offline: bool) -> None:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def screenshot(driver, name: str, scroll_to: str | None = None) -> list[str]:
    """PNGs at both tablet sizes into tests/artifacts/ (the top of the page, or scrolled so that the
    element `scroll_to` sits under the sticky header); returns the paths."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    paths = []
    for size in ("landscape", "portrait"):
        set_viewport(driver, size)
        driver.execute_script(
            "const el = arguments[0] && document.getElementById(arguments[0]);"
            "const top = document.querySelector('.bar').offsetHeight"
            " + (document.getElementById('offline-banner').hidden ? 0 : document.getElementById('offline-banner').offsetHeight);"
            "window.scrollTo(0, el ? el.getBoundingClientRect().top + window.scrollY - top - 12 : 0);",
            scroll_to,
        )
        w, h = SIZES[size]
        path = os.path.join(ARTIFACTS, f"clerk-{name}-{w}x{h}.png")
        driver.save_screenshot(path)
        paths.append(path)
    set_viewport(driver, "landscape")
    driver.execute_script("window.scrollTo(0, 0)")
    return paths


def unnamed_controls(driver) -> list[str]:
    """Interactive nodes of the accessibility tree (as Chromium computes it) with no accessible name."""
    tree = driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})
    roles = {"button", "textbox", "combobox", "radio", "checkbox", "link", "searchbox", "spinbutton",
             "listbox", "switch", "slider", "menuitem", "tab"}
    bad = []
    for node in tree["nodes"]:
        if node.get("ignored"):
            continue
        role = (node.get("role") or {}).get("value")
        if role in roles and not ((node.get("name") or {}).get("value") or "").strip():
            bad.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    return bad


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    """Poll until predicate() is truthy (returns it); fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# Run in the page: visible text below WCAG 2.1 AA contrast, and controls smaller than 44x44 px.
PAGE_AUDIT_JS = r"""
const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const over = (top, under) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1); };
function background(el) {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let bg = [255, 255, 255, 1];
  for (const c of layers.reverse()) bg = over(c, bg);
  return bg;
}
const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && r.bottom > 0 && s.opacity !== "0" && !el.closest("[hidden]"); };
const contrast = [];
for (const el of document.querySelectorAll("body *")) {
  if (!visible(el) || el.closest(".sr-only") || el.closest(":disabled")) continue;
  const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
  if (!text) continue;
  const s = getComputedStyle(el);
  const fg = over(parse(s.color), background(el));
  const bg = background(el);
  const L1 = lum(fg), L2 = lum(bg);
  const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
  const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
  const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  if (ratio < need) contrast.push(`${el.tagName}.${el.className} "${text.slice(0, 40)}" ${ratio.toFixed(2)} < ${need}`);
}
const small = [];
for (const el of document.querySelectorAll("button, select, a[href], input, textarea, [role=button]")) {
  const target = (el.type === "radio" || el.type === "checkbox") ? document.querySelector(`label[for="${el.id}"]`) : el;
  if (!target || !visible(target) || el.classList.contains("skip")) continue;
  const r = target.getBoundingClientRect();
  if (r.width < 44 || r.height < 44) small.push(`${target.tagName}#${target.id || el.id} ${Math.round(r.width)}x${Math.round(r.height)}`);
}
return {contrast, small};
"""


class Page:
    """The clerk page as a test drives it: by element ids and visible state, like a clerk would."""

    def __init__(self, driver, base: str, store: str):
        self.driver, self.base, self.store = driver, base, store

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def el(self, element_id: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.js("const e = document.getElementById(arguments[0]); return e.hidden ? '' : e.textContent.trim()",
                       element_id)

    def sign_in(self, locale: str = "en-GB", clerk: str = "staff-42", key: str | None = None) -> None:
        """Sign in with the store's clerk key (the one made for the test server unless `key` is given)."""
        from selenium.webdriver.support.ui import Select

        self.el("signin-key").send_keys(key or KEYS["clerk"])
        self.el("signin-store").send_keys(self.store)
        Select(self.el("signin-locale")).select_by_value(locale)
        if clerk:
            self.el("signin-clerk").send_keys(clerk)
        self.el("signin-submit").click()
        wait_until(lambda: self.js("return !document.getElementById('workspace').hidden"), what="workspace")

    def find(self, value: str, kind: str = "card") -> None:
        """Tap the identifier kind, then type (or 'scan': digits + Enter) into the field."""
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, f'label[for="idtype-{kind}"]').click()
        field = self.el("find-value")
        field.clear()
        field.send_keys(value + "\n")

    def offers(self) -> list[dict]:
        return self.js("""return [...document.querySelectorAll('#offers-list > li')].map((li) => ({
            item_id: li.dataset.item, title: li.querySelector('h3').textContent,
            reason: (li.querySelector('.reason') || {}).textContent || '',
            availability: li.querySelector('.avail').textContent.trim(),
            availability_kind: li.querySelector('.avail').className,
            status: li.querySelector('.rec-status').textContent}))""")

    def wait_offers(self, customer_id: str) -> list[dict]:
        wait_until(lambda: self.text("customer-title").endswith(customer_id), what=f"customer {customer_id}")
        return wait_until(self.offers, what="offers")

    def tap(self, item_id: str, kind: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, f'#offers-list button[data-item="{item_id}"][data-kind="{kind}"]').click()

    def queued(self) -> list[dict]:
        return self.js("return JSON.parse(localStorage.getItem('recsvc.clerk.events.v1') || '[]')")

    def sent_bodies(self) -> list[str]:
        """Bodies of the page's requests since the last call (from Chromium's network log)."""
        import json

        out = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                req = msg["params"]["request"]
                out.append(req["url"] + " " + req.get("postData", ""))
        return out

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def hide_toast(self) -> None:
        self.js("const t = document.getElementById('toast'); t.classList.remove('visible'); t.textContent = '';")
