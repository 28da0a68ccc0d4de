// Identifiers as the API takes them. Emails and phone numbers never leave the page in clear: they
// are normalised, then SHA-256 hashed here with WebCrypto (which needs a secure context: https,
// or http on localhost / 127.0.0.1).
//
// Normalisation (the customer data must be hashed the same way):
//   email: trimmed, lower-cased                            " Ada@Example.COM " -> "ada@example.com"
//   phone: E.164, "+" then digits only; "00" -> "+"; a national number starting with 0 takes the
//          store country's calling code                     "06 12 34 56 78" (fr-FR) -> "+33612345678"

const CALLING_CODES = {
  FR: "33", BE: "32", CH: "41", LU: "352", MC: "377", GB: "44", IE: "353", US: "1", CA: "1",
  DE: "49", ES: "34", IT: "39", NL: "31", PT: "351", AT: "43",
};
const HEX64 = /^[0-9a-f]{64}$/;

export class IdentifierError extends Error {
  constructor(code) {
    super(code);
    this.code = code; // i18n key of the message
  }
}

export function normaliseEmail(raw) {
  const v = String(raw).trim().toLowerCase();
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v)) throw new IdentifierError("errEmail");
  return v;
}

export function normalisePhone(raw, locale) {
  let v = String(raw).trim().replace(/[\s().\-\/]/g, "");
  if (v.startsWith("00")) v = "+" + v.slice(2);
  if (!v.startsWith("+")) {
    const region = String(locale || "").split(/[-_]/)[1]?.toUpperCase();
    const code = CALLING_CODES[region];
    if (!code || !v.startsWith("0")) throw new IdentifierError("errPhone");
    v = "+" + code + v.slice(1);
  }
  if (!/^\+[1-9][0-9]{6,14}$/.test(v)) throw new IdentifierError("errPhone");
  return v;
}

export function normaliseCard(raw) {
  const v = String(raw).trim().replace(/\s+/g, "");
  if (!v) throw new IdentifierError("errEmpty");
  return v;
}

export async function sha256Hex(text) {
  if (!globalThis.crypto?.subtle) throw new IdentifierError("errNoCrypto");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * {type, value} for POST /v1/recommendations from what the clerk typed or scanned.
 * kind: "loyalty_card" | "email" | "phone" (the chosen tab); an "@" always means email, and
 * 64 hex characters are taken as an already-hashed email or phone.
 */
export async function toIdentifier(kind, raw, locale) {
  const text = String(raw ?? "").trim();
  if (!text) throw new IdentifierError("errEmpty");
  if (text.includes("@")) kind = "email";
  if (kind === "email" || kind === "phone") {
    const type = kind === "email" ? "email_sha256" : "phone_sha256";
    if (HEX64.test(text.toLowerCase())) return { type, value: text.toLowerCase() };
    const normal = kind === "email" ? normaliseEmail(text) : normalisePhone(text, locale);
    return { type, value: await sha256Hex(normal) };
  }
  return { type: "loyalty_card", value: normaliseCard(text) };
}
