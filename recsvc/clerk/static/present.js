// API answers -> what the clerk reads: relative times, prices, availability, activity sentences,
// and a tolerant reading of GET /v1/customers/{id} (consent, identifiers, recent activity).

const EVENT_KINDS = new Set([
  "view", "click", "add_to_cart", "purchase", "return", "rating",
  "offer_shown", "offer_accepted", "offer_declined",
]);
const CHANNELS = new Set(["web", "app", "store", "call_center"]);

/** Seconds since the epoch from an ISO string or epoch seconds (or milliseconds); null if unreadable. */
export function epochSeconds(v) {
  if (v === null || v === undefined || v === "") return null;
  if (typeof v === "number" && Number.isFinite(v)) return v > 1e12 ? v / 1000 : v;
  if (typeof v === "string" && /^\d+(\.\d+)?$/.test(v)) return epochSeconds(Number(v));
  const ms = Date.parse(String(v));
  return Number.isNaN(ms) ? null : ms / 1000;
}

/** "yesterday", "last week", "3 hours ago", "il y a 2 jours" ... */
export function ago(seconds, locale, t, now = Date.now() / 1000) {
  if (seconds === null) return "";
  const d = seconds - now;
  const a = Math.abs(d);
  if (a < 45) return t("now");
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const steps = [
    [3600, 60, "minute"],
    [86400, 3600, "hour"],
    [7 * 86400, 86400, "day"],
    [30 * 86400, 7 * 86400, "week"],
    [365 * 86400, 30 * 86400, "month"],
    [Infinity, 365 * 86400, "year"],
  ];
  for (const [limit, size, unit] of steps) {
    if (a < limit) return rtf.format(Math.round(d / size), unit);
  }
  return "";
}

export function clockTime(seconds, locale) {
  return new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" }).format(new Date(seconds * 1000));
}

export function price(value, locale) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "";
  return new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(value);
}

/** {kind, text} of an offer's availability in this store. */
export function availability(a, t) {
  if (!a) return { kind: "unknown", text: t("availUnknown") };
  if (a.fulfilment === "take_home" || (a.in_stock && a.quantity > 0)) {
    return { kind: "take_home", text: t("availTakeHome", { qty: a.quantity ?? "" }) };
  }
  if (a.fulfilment === "pick_up_elsewhere") return { kind: "pick_up_elsewhere", text: t("availPickUp") };
  return { kind: "order_for_delivery", text: t("availOrder") };
}

export function fallbackText(rec, t) {
  if (rec.personalised) return t("personalised");
  const code = rec.fallback_reason || "anonymous";
  const key = `fallback_${code}`;
  const text = t(key);
  return text === key ? t("fallback_other", { code }) : text;
}

function consentOf(js) {
  const c = js.consent;
  if (c === undefined || c === null) return { granted: null };
  if (typeof c === "boolean") return { granted: c };
  const value = c.personalisation ?? c.granted ?? null;
  if (c.recorded === false) {
    // No choice recorded: the service applies its default (RECSVC_CONSENT_DEFAULT).
    return { granted: null, default: typeof value === "boolean" ? value : null };
  }
  return {
    granted: typeof value === "boolean" ? value : null,
    source: c.source ?? null,
    channel: c.channel ?? null,
    at: epochSeconds(c.at ?? c.updated_at ?? c.timestamp ?? null),
  };
}

function identifiersOf(js) {
  const raw = js.identifiers || [];
  const list = Array.isArray(raw)
    ? raw
    : Object.entries(raw).flatMap(([type, v]) => (Array.isArray(v) ? v : [v]).map((value) => ({ type, value })));
  return list
    .map((x) => {
      if (typeof x === "string") {
        const k = x.indexOf(":");
        return k > 0 ? { type: x.slice(0, k), value: x.slice(k + 1) } : null;
      }
      return x && x.type ? { type: x.type, value: x.value ?? "", masked: x.masked ?? null } : null;
    })
    .filter(Boolean);
}

function activityOf(js) {
  const raw = js.recent_activity || js.activity || js.recent_events || js.events || [];
  if (!Array.isArray(raw)) return [];
  return raw
    .map((e) => ({
      event: e.event ?? e.type,
      channel: e.channel,
      item_id: e.item_id,
      title: e.title ?? e.item_title ?? null,
      store_id: e.store_id ?? null,
      at: epochSeconds(e.timestamp ?? e.ts ?? e.at ?? null),
      actor: e.actor?.type ?? e.actor_type ?? null,
    }))
    .filter((e) => EVENT_KINDS.has(e.event) && e.item_id !== undefined)
    .sort((a, b) => (b.at ?? 0) - (a.at ?? 0));
}

/** GET /v1/customers/{id} read tolerantly: {id, consent, identifiers, activity}. */
export function readCustomer(js, customerId) {
  js = js || {};
  return {
    id: js.customer_id ?? customerId,
    consent: consentOf(js),
    identifiers: identifiersOf(js),
    activity: activityOf(js),
  };
}

/** "Bought Trail shoe online", "A consulté … sur l'appli" */
export function activitySentence(e, title, storeId, t) {
  let where = "";
  if (CHANNELS.has(e.channel)) {
    where = e.channel === "store" && e.store_id && e.store_id !== storeId
      ? t("where_storeOther", { store: e.store_id })
      : t(`where_${e.channel}`);
  }
  const what = t(`ev_${e.event}`, { title });
  const clerk = e.actor === "clerk" && e.channel === "store" ? ` ${t("byClerk")}` : "";
  return `${what} ${where}${clerk}`.trim();
}

/** Card numbers are shown masked: enough for the customer to recognise, not to copy. */
export function maskedIdentifier(x, t) {
  const label = t(`idType_${x.type}`);
  if (x.type === "loyalty_card" || x.type === "device") {
    const tail = x.masked ? String(x.masked).replace(/^[*•]+/, "") : String(x.value || "").slice(-4);
    if (tail) return `${label} •••• ${tail}`;
  }
  return label;
}
