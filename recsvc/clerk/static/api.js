// The public HTTP API, as the page uses it. Every call carries `Authorization: Bearer <clerk key>`.
// Two kinds of failure: NetworkError (no answer at all: offline, server down) and ApiError (an
// answer in the contract's error shape, with its status and code).

export class NetworkError extends Error {}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

const TIMEOUT_MS = 8000;

export class Api {
  constructor(key) {
    this.key = key;
  }

  async call(method, path, body) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${this.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (e) {
      throw new NetworkError(e && e.message ? e.message : "network error");
    }
    let js = null;
    const ctype = resp.headers.get("Content-Type") || "";
    if (ctype.includes("json")) {
      try {
        js = await resp.json();
      } catch (e) {
        throw new ApiError(resp.status, "bad_response", `unreadable answer (${e.message})`);
      }
    }
    if (!resp.ok) {
      const err = (js && js.error) || {};
      throw new ApiError(resp.status, err.code || `http_${resp.status}`, err.message || resp.statusText, err.details);
    }
    return js;
  }

  /** customer: {customer_id} or {identifier: {type, value}} (the contract's two shapes). */
  recommend(customer, context, n) {
    return this.call("POST", "/v1/recommendations", {
      customer,
      context,
      n,
      explain: true,
    });
  }

  customer(customerId) {
    return this.call("GET", `/v1/customers/${encodeURIComponent(customerId)}`);
  }

  /** The customer's choice, given on their word to `actor` ({type: "clerk", id}). */
  setConsent(customerId, granted, actor) {
    return this.call("PUT", `/v1/customers/${encodeURIComponent(customerId)}/consent`, {
      personalisation: granted,
      source: "clerk",
      channel: "store",
      actor,
    });
  }

  sendEvents(events) {
    return this.call("POST", "/v1/events", { events });
  }

  similar(itemId, storeId, locale, n) {
    const q = new URLSearchParams({ channel: "store", store_id: storeId, n: String(n) });
    if (locale) q.set("locale", locale);
    return this.call("GET", `/v1/items/${encodeURIComponent(itemId)}/similar?${q}`);
  }

  health() {
    return this.call("GET", "/healthz");
  }

  /** What the key is: {auth, key_id, role, store_id, channels} (checked at sign-in). */
  whoami() {
    return this.call("GET", "/v1/auth/me");
  }
}
