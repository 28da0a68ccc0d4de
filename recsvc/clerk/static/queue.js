// Offer taps waiting to reach POST /v1/events, kept in localStorage so that neither a dropped
// connection nor a reloaded tab loses them. Each event gets its event_id when it is tapped and keeps
// it on every retry: the service deduplicates by event_id, so a retry never counts twice.

import { ApiError, NetworkError } from "./api.js";

const KEY = "recsvc.clerk.events.v1";
const BATCH = 100; // the API takes up to 1000 per call
const INDEX_IN_FIELD = /events\[(\d+)\]/;

function load() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(v) ? v.filter((e) => e && typeof e.event_id === "string") : [];
  } catch {
    return [];
  }
}

function save(events) {
  if (events.length) localStorage.setItem(KEY, JSON.stringify(events));
  else localStorage.removeItem(KEY);
}

export class EventQueue {
  constructor() {
    this.flushing = null;
  }

  get size() {
    return load().length;
  }

  add(event) {
    const events = load();
    if (!events.some((e) => e.event_id === event.event_id)) events.push(event);
    save(events);
  }

  remove(ids) {
    const gone = new Set(ids);
    save(load().filter((e) => !gone.has(e.event_id)));
  }

  /**
   * Send what is waiting, oldest first, one flush at a time.
   * -> {sent: [event_id], rejected: [{event, message}], offline: bool, error: ApiError|null}
   */
  flush(api) {
    if (!this.flushing) {
      this.flushing = this._flush(api).finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  async _flush(api) {
    const out = { sent: [], rejected: [], offline: false, error: null };
    for (;;) {
      const batch = load().slice(0, BATCH);
      if (!batch.length) return out;
      try {
        await api.sendEvents(batch);
        this.remove(batch.map((e) => e.event_id));
        out.sent.push(...batch.map((e) => e.event_id));
      } catch (e) {
        if (e instanceof NetworkError) {
          out.offline = true;
          return out;
        }
        if (e instanceof ApiError && e.status === 422) {
          // The batch was refused whole: drop the events it names, keep the others for the next round.
          const bad = new Set();
          for (const d of e.details) {
            const m = INDEX_IN_FIELD.exec(d.field || "");
            if (m && Number(m[1]) < batch.length) bad.add(Number(m[1]));
          }
          const dropped = bad.size ? [...bad].map((k) => batch[k]) : batch;
          this.remove(dropped.map((ev) => ev.event_id));
          out.rejected.push(...dropped.map((ev) => ({ event: ev, message: e.message })));
          continue;
        }
        out.error = e; // 401/403/429/5xx: keep everything, try again later
        return out;
      }
    }
  }
}
