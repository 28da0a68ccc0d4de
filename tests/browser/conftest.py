"""One real `recsvc serve` (in-memory store, the clerk test model, API keys on: a clerk key of the test
store and an admin key for seeding, made with `recsvc keys create`; demo customers seeded through the
HTTP API) and one headless Chromium per test module, stopped when the module ends; each test gets the
page fresh (empty session and local storage, landscape viewport, back online)."""

from __future__ import annotations

import os

import pytest

from tests.browser import (
    KEYS,
    STORE,
    Page,
    make_clerk_model,
    new_driver,
    seed,
    set_offline,
    set_viewport,
    wait_until,
)
from tests.service import PYTHON, Server, free_port, make_key, server_env


def serve_command(models_dir: str, port: int) -> list[str]:
    return [PYTHON, "-m", "recsvc", "serve", "--port", str(port), "--models-dir", models_dir,
            "--store-url", "memory://"]


@pytest.fixture(scope="module")
def clerk_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("clerk")
    models = str(root / "models")
    os.makedirs(models)
    make_clerk_model(models)
    keys_file = str(root / "keys.json")
    KEYS.update(clerk=make_key(keys_file, "clerk", store=STORE, name="tablet-s1"),
                other_store=make_key(keys_file, "clerk", store="s2", name="tablet-s2"),
                storefront=make_key(keys_file, "storefront", name="web-shop"),
                admin=make_key(keys_file, "admin", name="back-office"))
    port = free_port()
    env = server_env(models, RECSVC_AUTH="on", RECSVC_KEYS_FILE=keys_file)
    server = Server(serve_command(models, port), env, str(root), port, str(root / "serve.log"))
    try:
        server.wait_ready()
        seed(server.base)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = new_driver(str(tmp_path_factory.mktemp("chromium-profile")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, clerk_server):
    """The clerk page, signed out, with nothing queued; a Page object to drive it."""
    set_offline(browser, False)
    set_viewport(browser, "landscape")
    browser.get(clerk_server.base + "/clerk/")
    browser.execute_script("sessionStorage.clear(); localStorage.clear();")
    browser.get(clerk_server.base + "/clerk/")
    wait_until(lambda: browser.execute_script("return document.body.dataset.ready === 'true'"), what="page ready")
    browser.get_log("browser")  # start each test with an empty console
    yield Page(browser, clerk_server.base, STORE)
    set_offline(browser, False)
