// The clerk's tablet: sign in (key + store), find the customer, consent, offers with reasons and
// stock, offer taps as events (queued while offline), recent activity, similar items.
// Public API only; see README "The clerk's tablet".

import { $, h, setText, show } from "./dom.js";
import { Api, ApiError, NetworkError } from "./api.js";
import { translator, language, LANGUAGES, missingKeys } from "./i18n.js";
import { IdentifierError, sha256Hex, toIdentifier } from "./identity.js";
import {
  activitySentence, ago, availability, clockTime, fallbackText, maskedIdentifier, price, readCustomer,
} from "./present.js";
import { EventQueue } from "./queue.js";

const SESSION_KEY = "recsvc.clerk.session";
const LOCALE_KEY = "recsvc.clerk.locale"; // last store language used on this tablet (not secret)
const N_OFFERS = 6;
const N_SIMILAR = 4;
const N_ACTIVITY = 10;
const RETRY_MS = 5000;
const IDLE_CLEAR_MS = 5 * 60 * 1000;
const EVENT_OF = { shown: "offer_shown", accepted: "offer_accepted", declined: "offer_declined" };

const queue = new EventQueue();
const titles = new Map(); // item_id -> title, from every list seen (names the items in activity)
let session = null;
let api = null;
let t = translator(localStorage.getItem(LOCALE_KEY) || navigator.language);
let view = null; // {customerId, rec, customer, receivedAt, taps: Map(item_id -> Map(kind -> state))}
let offline = false;

// ---------------------------------------------------------------- strings and session

function applyStrings(locale) {
  t = translator(locale);
  document.documentElement.lang = language(locale);
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = `recsvc · ${t("brand")}`;
  updateFindLabel();
  renderNet();
}

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    return s && s.key && s.store_id && s.locale ? s : null;
  } catch {
    return null;
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const key = $("signin-key").value.trim();
  const store = $("signin-store").value.trim();
  const locale = $("signin-locale").value;
  let clerk = $("signin-clerk").value.trim();
  const err = !key ? "errKeyRequired" : !store ? "errStoreRequired" : null;
  setText($("signin-error"), err ? t(err) : "");
  if (err) {
    $(key ? "signin-store" : "signin-key").focus();
    return;
  }
  const refused = await checkKey(key, store);
  if (refused) {
    setText($("signin-error"), refused);
    $("signin-key").focus();
    return;
  }
  if (!clerk) {
    // The key itself never goes into events or logs: a short hash of it names the tablet's clerk.
    clerk = globalThis.crypto?.subtle ? `clerk-${(await sha256Hex(key)).slice(0, 10)}` : `clerk@${store}`;
  }
  session = { key, store_id: store, locale, clerk_id: clerk };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  localStorage.setItem(LOCALE_KEY, locale);
  $("signin-key").value = "";
  startWorkspace();
}

/** Why the service refuses this key for this store (null: fine, or offline: checked on the first call). */
async function checkKey(key, store) {
  const submit = $("signin-submit");
  submit.disabled = true;
  try {
    const who = await new Api(key).whoami();
    if (!who.auth) return null; // RECSVC_AUTH=off (a test setup): any key goes
    if (who.role !== "clerk" && who.role !== "admin") return t("errKeyRole", { role: who.role });
    if (who.store_id && who.store_id !== store) return t("errKeyStore", { store: who.store_id });
    return null;
  } catch (e) {
    if (e instanceof NetworkError) return null;
    if (e instanceof ApiError && e.status === 401) return t("errKeyRefused");
    return t("errServer", { message: e.message });
  } finally {
    submit.disabled = false;
  }
}

function signOut(messageKey) {
  sessionStorage.removeItem(SESSION_KEY);
  session = null;
  api = null;
  clearCustomer();
  show($("workspace"), false);
  show($("signin"), true);
  show($("sign-out"), false);
  show($("store-badge"), false);
  setText($("signin-error"), messageKey ? t(messageKey) : "");
  $("signin-key").focus();
}

function startWorkspace() {
  api = new Api(session.key);
  applyStrings(session.locale);
  const badge = $("store-badge");
  badge.textContent = t("storeBadge", { store: session.store_id, language: LANGUAGES[language(session.locale)] });
  show(badge, true);
  show($("signin"), false);
  show($("workspace"), true);
  show($("sign-out"), true);
  $("find-value").focus();
  tick();
}

// ---------------------------------------------------------------- connection state

function setOffline(value) {
  offline = value;
  renderNet();
}

function renderNet() {
  const pill = $("net-pill");
  pill.dataset.state = offline ? "offline" : "online";
  $("net-text").textContent = t(offline ? "offline" : "online");
  const n = queue.size;
  show($("offline-banner"), offline);
  $("offline-text").textContent = n ? t("offlineText", { n }) : t("offlineTextNone");
  if (view) {
    const stale = offline && view.receivedAt ? t("stale", { time: clockTime(view.receivedAt, session.locale) }) : "";
    setText($("offers-stale"), stale);
  }
}

let toastTimer = 0;

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.classList.add("visible");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("visible"), 6000);
}

/** A tablet left alone on the shop floor stops showing the last customer (queued taps are kept). */
let idleTimer = 0;

function resetIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (view) clearCustomer();
  }, IDLE_CLEAR_MS);
}

/** A failed call: NetworkError -> offline; 401 -> sign in again; anything else -> its message. */
function failed(e, errorEl) {
  if (e instanceof NetworkError) {
    setOffline(true);
    if (errorEl) setText(errorEl, t("errOffline"));
    return;
  }
  if (e instanceof ApiError && e.status === 401) {
    signOut("errAuth");
    return;
  }
  const text = e instanceof ApiError && e.status === 403
    ? t("errForbidden", { message: e.message })
    : e instanceof IdentifierError ? t(e.code) : t("errServer", { message: e.message });
  if (errorEl) setText(errorEl, text);
  else toast(text);
}

function succeeded() {
  if (offline) setOffline(false);
}

/** Periodic and `online`-event retry: send queued taps, or probe the service while offline. */
async function tick() {
  if (!api) return;
  if (queue.size) {
    await flush();
  } else if (offline) {
    try {
      await api.health();
      setOffline(false);
    } catch (e) {
      if (!(e instanceof NetworkError)) setOffline(false);
    }
  }
}

async function flush() {
  if (!api) return;
  const wasOffline = offline;
  const r = await queue.flush(api);
  if (r.offline) {
    setOffline(true);
  } else if (r.sent.length || r.rejected.length || !r.error) {
    setOffline(false);
  }
  for (const id of r.sent) markTap(id, "sent");
  for (const { event, message } of r.rejected) {
    markTap(event.event_id, "rejected");
    toast(t("recRejected", { what: t(kindOfEvent(event.event)), message }));
  }
  if (r.error) failed(r.error, null);
  if (wasOffline && !r.offline && r.sent.length) toast(t("sentQueued", { n: r.sent.length }));
  renderNet();
  if (r.sent.length) refreshActivity();
}

/** The customer's activity again (it now holds the taps just delivered); the offers stay as they are. */
async function refreshActivity() {
  if (!view) return;
  const customerId = view.customerId;
  try {
    const customer = readCustomer(await api.customer(customerId), customerId);
    if (!view || view.customerId !== customerId) return;
    view.customer = customer;
    renderActivity();
  } catch (e) {
    if (e instanceof NetworkError) setOffline(true);
  }
}

// ---------------------------------------------------------------- finding the customer

function idKind() {
  return document.querySelector('input[name="idtype"]:checked')?.value || "loyalty_card";
}

function updateFindLabel() {
  const kind = idKind();
  const input = $("find-value");
  $("find-value-label").textContent = t(kind === "email" ? "emailAddress" : kind === "phone" ? "phoneNumber" : "cardNumber");
  input.setAttribute("inputmode", kind === "email" ? "email" : kind === "phone" ? "tel" : "numeric");
}

function context() {
  return { channel: "store", store_id: session.store_id, locale: session.locale };
}

async function find(ev) {
  ev?.preventDefault();
  const errEl = $("find-error");
  setText(errEl, "");
  let identifier;
  try {
    identifier = await toIdentifier(idKind(), $("find-value").value, session.locale);
  } catch (e) {
    failed(e, errEl);
    return;
  }
  $("find-submit").disabled = true;
  try {
    const rec = await api.recommend({ identifier }, context(), N_OFFERS);
    succeeded();
    if (!rec.customer_id) {
      clearCustomer(); // never leave the previous customer on screen under a failed lookup
      setText(errEl, t("errNotFound", { what: t(`what_${identifier.type}`) }));
      return;
    }
    await showCustomer(rec.customer_id, rec);
    toast(t("found", { id: rec.customer_id }));
    const input = $("find-value");
    input.value = "";
    input.focus();
  } catch (e) {
    failed(e, errEl);
  } finally {
    $("find-submit").disabled = false;
  }
}

/** Fresh selection (by customer id) and customer record, e.g. after a consent change. */
async function reload() {
  if (!view) return;
  try {
    const rec = await api.recommend({ customer_id: view.customerId }, context(), N_OFFERS);
    succeeded();
    await showCustomer(view.customerId, rec);
  } catch (e) {
    failed(e, null);
  }
}

async function showCustomer(customerId, rec) {
  let customer;
  try {
    customer = readCustomer(await api.customer(customerId), customerId);
  } catch (e) {
    if (e instanceof NetworkError || (e instanceof ApiError && e.status === 401)) throw e;
    customer = readCustomer(null, customerId); // the selection is still worth showing
  }
  // Taps belong to one selection: a new recommendation_id starts with none pressed.
  const sameSelection = view && view.customerId === customerId && view.rec.recommendation_id === rec.recommendation_id;
  view = { customerId, rec, customer, receivedAt: Date.now() / 1000, taps: sameSelection ? view.taps : new Map() };
  for (const o of rec.items) titles.set(o.item_id, o.title);
  renderCustomer();
  renderOffers();
  renderActivity();
  renderNet();
}

function clearCustomer() {
  view = null;
  show($("customer-card"), false);
  show($("activity-card"), false);
  $("offers-list").replaceChildren();
  show($("offers-empty"), true);
  show($("offers-notice"), false);
  show($("offers-stale"), false);
  show($("offers-refresh"), false);
  $("similar-list").replaceChildren();
  setText($("similar-for"), "");
}

// ---------------------------------------------------------------- customer and consent

function renderCustomer() {
  const c = view.customer;
  show($("customer-card"), true);
  $("customer-title").textContent = t("customerId", { id: c.id });
  $("customer-identifiers").replaceChildren(...c.identifiers.map((x) => h("li", { class: "chip", text: maskedIdentifier(x, t) })));
  const state = $("consent-state");
  const granted = c.consent.granted;
  state.dataset.state = granted === true ? "given" : granted === false ? "withdrawn" : "unknown";
  const unknownKey = c.consent.default === true ? "consentDefaultGiven"
    : c.consent.default === false ? "consentDefaultDenied" : "consentUnknown";
  state.textContent = t(granted === true ? "consentGiven" : granted === false ? "consentWithdrawn" : unknownKey);
  const by = c.consent.source ? t("consentBy", { source: c.consent.source, channel: c.consent.channel || "-" }) : "";
  setText($("consent-meta"), c.consent.at ? t("consentMeta", { when: ago(c.consent.at, session.locale, t), by }) : "");
  $("consent-give").setAttribute("aria-pressed", String(granted === true));
  $("consent-withdraw").setAttribute("aria-pressed", String(granted === false));
}

async function recordConsent(granted) {
  if (!view) return;
  const buttons = [$("consent-give"), $("consent-withdraw")];
  buttons.forEach((b) => (b.disabled = true));
  try {
    await api.setConsent(view.customerId, granted, { type: "clerk", id: session.clerk_id });
    succeeded();
    toast(t("consentSaved"));
    await reload();
  } catch (e) {
    if (e instanceof NetworkError) {
      setOffline(true);
      toast(t("consentOffline"));
    } else {
      failed(e, null);
    }
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// ---------------------------------------------------------------- offers

function thumb(item) {
  const cat = String(item.category || item.title || "?");
  let hash = 0;
  for (const ch of cat) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return h("span", { class: `thumb tone-${hash % 6}`, "aria-hidden": "true", text: cat.slice(0, 1).toUpperCase() });
}

let uid = 0; // element ids are generated: item ids may hold characters an id reference cannot

function itemBody(item, idPrefix) {
  const a = availability(item.availability, t);
  const reasons = (item.reasons || []).map((r) => r.text).filter(Boolean);
  const titleId = `${idPrefix}-${++uid}`;
  return {
    titleId,
    nodes: [
      h("div", { class: "item-head" },
        thumb(item),
        h("div", { class: "item-title" },
          h("h3", { id: titleId, text: item.title || item.item_id }),
          h("p", { class: "meta" }, h("span", { text: item.category || "" }), h("span", { class: "item-id", text: item.item_id }))),
        h("p", { class: "price" }, h("span", { class: "sr-only", text: `${t("price")} ` }), price(item.price, session.locale))),
      reasons.length
        ? h("p", { class: "reason" }, h("span", { class: "why", text: t("why") }), " ", reasons.join(" · "))
        : null,
      h("p", { class: `avail avail-${a.kind}` }, h("span", { class: "avail-dot", "aria-hidden": "true" }), a.text),
    ],
  };
}

function renderOffers() {
  const rec = view.rec;
  const notice = $("offers-notice");
  notice.textContent = fallbackText(rec, t);
  notice.dataset.kind = rec.personalised ? "personalised" : "fallback";
  show(notice, true);
  show($("offers-empty"), false);
  show($("offers-refresh"), true);
  const list = $("offers-list");
  list.replaceChildren(...rec.items.map((item) => offerCard(item)));
}

function offerCard(item) {
  const { titleId, nodes } = itemBody(item, "offer");
  const taps = view.taps.get(item.item_id) || new Map();
  const status = h("p", { class: "rec-status", "aria-live": "polite" });
  const buttons = ["shown", "accepted", "declined"].map((kind) =>
    h("button", {
      type: "button",
      class: `btn btn-tap tap-${kind}`,
      "data-kind": kind,
      "data-item": item.item_id,
      "aria-pressed": String(taps.has(kind)),
      "aria-describedby": titleId,
      text: t(kind),
      on: { click: () => tap(item, kind) },
    }));
  const li = h("li", { class: "offer", "aria-labelledby": titleId, "data-item": item.item_id },
    ...nodes,
    h("div", { class: "btn-row taps", role: "group", "aria-label": t("offerActions", { title: item.title || item.item_id }) }, ...buttons),
    status);
  renderTapStatus(li, item.item_id);
  return li;
}

/** A v4 UUID: crypto.randomUUID where the context is secure, else the same from getRandomValues. */
function newEventId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function kindOfEvent(event) {
  return Object.keys(EVENT_OF).find((k) => EVENT_OF[k] === event) || "shown";
}

function tap(item, kind) {
  if (!view || !session) return;
  const taps = view.taps.get(item.item_id) || new Map();
  if (taps.has(kind)) return; // one tap counts once; the event is already recorded or queued
  const event = {
    event_id: newEventId(),
    customer: { customer_id: view.customerId },
    item_id: item.item_id,
    event: EVENT_OF[kind],
    channel: "store",
    store_id: session.store_id,
    timestamp: new Date().toISOString(),
    recommendation_id: view.rec.recommendation_id,
    actor: { type: "clerk", id: session.clerk_id },
  };
  queue.add(event);
  taps.set(kind, { event_id: event.event_id, state: "queued" });
  view.taps.set(item.item_id, taps);
  refreshOffer(item.item_id);
  renderNet();
  flush();
}

function markTap(eventId, state) {
  if (!view) return;
  for (const [itemId, taps] of view.taps) {
    for (const tapState of taps.values()) {
      if (tapState.event_id === eventId) {
        tapState.state = state;
        refreshOffer(itemId);
      }
    }
  }
}

function refreshOffer(itemId) {
  const li = $("offers-list").querySelector(`li[data-item="${CSS.escape(itemId)}"]`);
  if (!li) return;
  const taps = view.taps.get(itemId) || new Map();
  for (const b of li.querySelectorAll("button[data-kind]")) b.setAttribute("aria-pressed", String(taps.has(b.dataset.kind)));
  renderTapStatus(li, itemId);
}

function renderTapStatus(li, itemId) {
  const taps = view.taps.get(itemId);
  const el = li.querySelector(".rec-status");
  if (!taps || !taps.size) {
    setText(el, "");
    return;
  }
  const parts = [...taps].map(([kind, s]) => {
    const key = s.state === "sent" ? "recSent" : s.state === "rejected" ? "recRejectedShort" : "recQueued";
    return t(key, { what: t(kind) });
  });
  el.dataset.state = [...taps.values()].some((s) => s.state === "queued") ? "queued" : "sent";
  setText(el, parts.join(" "));
}

// ---------------------------------------------------------------- activity

function renderActivity() {
  const acts = view.customer.activity.slice(0, N_ACTIVITY);
  show($("activity-card"), true);
  show($("activity-empty"), acts.length === 0);
  $("activity-list").replaceChildren(...acts.map((e) => {
    const title = e.title || titles.get(e.item_id) || e.item_id;
    const when = e.at !== null ? h("time", { datetime: new Date(e.at * 1000).toISOString(), text: ago(e.at, session.locale, t) }) : null;
    return h("li", { class: `act act-${e.event}` },
      h("span", { class: `act-icon ch-${e.channel}`, "aria-hidden": "true" }),
      h("span", { class: "act-text", text: activitySentence(e, title, session.store_id, t) }),
      when);
  }));
}

// ---------------------------------------------------------------- similar items

async function findSimilar(ev) {
  ev.preventDefault();
  const errEl = $("similar-error");
  setText(errEl, "");
  const itemId = $("similar-value").value.trim();
  $("similar-list").replaceChildren();
  setText($("similar-for"), "");
  if (!itemId) {
    setText(errEl, t("errEmpty"));
    return;
  }
  $("similar-submit").disabled = true;
  try {
    const js = await api.similar(itemId, session.store_id, session.locale, N_SIMILAR);
    succeeded();
    for (const o of js.items) titles.set(o.item_id, o.title);
    setText($("similar-for"), t("similarFor", { title: titles.get(itemId) || itemId }));
    const list = $("similar-list");
    if (!js.items.length) {
      list.replaceChildren(h("li", { class: "empty", text: t("similarEmpty") }));
      return;
    }
    list.replaceChildren(...js.items.map((item) => {
      const { titleId, nodes } = itemBody(item, "similar");
      return h("li", { class: "offer similar-item", "aria-labelledby": titleId }, ...nodes);
    }));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) setText(errEl, t("errItemUnknown", { id: itemId }));
    else failed(e, errEl);
  } finally {
    $("similar-submit").disabled = false;
  }
}

// ---------------------------------------------------------------- a scanner typing anywhere

/** A card scanned while no field has focus (digits then Enter, fast) goes to the customer search. */
function scannerListener() {
  let buffer = "";
  let last = 0;
  document.addEventListener("keydown", (ev) => {
    if (!session) return;
    const target = ev.target;
    if (target instanceof HTMLElement && target.closest("input, select, textarea")) return;
    const now = performance.now();
    if (now - last > 300) buffer = "";
    last = now;
    if (/^[0-9]$/.test(ev.key)) {
      buffer += ev.key;
    } else if (ev.key === "Enter" && buffer.length >= 6) {
      ev.preventDefault();
      $("idtype-card").checked = true;
      updateFindLabel();
      $("find-value").value = buffer;
      buffer = "";
      find(null);
    }
  });
}

// ---------------------------------------------------------------- start

function start() {
  const locale = localStorage.getItem(LOCALE_KEY) || navigator.language || "en-GB";
  const select = $("signin-locale");
  const match = [...select.options].find((o) => o.value === locale) ||
    [...select.options].find((o) => o.value.startsWith(language(locale)));
  if (match) select.value = match.value;
  applyStrings(select.value);

  $("signin-form").addEventListener("submit", signIn);
  $("signin-locale").addEventListener("change", (ev) => applyStrings(ev.target.value));
  $("sign-out").addEventListener("click", () => signOut(null));
  $("find-form").addEventListener("submit", find);
  for (const r of document.querySelectorAll('input[name="idtype"]')) {
    r.addEventListener("change", () => {
      updateFindLabel();
      $("find-value").focus();
    });
  }
  $("consent-give").addEventListener("click", () => recordConsent(true));
  $("consent-withdraw").addEventListener("click", () => recordConsent(false));
  $("offers-refresh").addEventListener("click", reload);
  $("similar-form").addEventListener("submit", findSimilar);
  $("retry-now").addEventListener("click", tick);
  window.addEventListener("online", tick);
  window.addEventListener("offline", () => setOffline(true));
  window.addEventListener("storage", renderNet);
  setInterval(tick, RETRY_MS);
  scannerListener();
  for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, resetIdle, { passive: true });

  if (!navigator.onLine) offline = true;
  session = loadSession();
  if (session) startWorkspace();
  else {
    show($("signin"), true);
    renderNet();
  }
  document.body.dataset.ready = "true";
  if (missingKeys().length) console.error("clerk page: strings missing", missingKeys());
}

start();
