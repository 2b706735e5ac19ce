/**
 * wire.js: what the Cloison protocol fixes, independent of any connection: the version and
 * subprotocol, the error types, which close codes mean "reconnect" (protocol.md section 16),
 * the backoff, and idempotency keys. Pure functions, so they are testable on their own.
 */

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL = "cloison.v1.json";

// The spec's suggested backoff: a random delay in [0, min(30 s, 0.5 s * 2^attempt)].
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// Close codes below 4000 that the spec does not list are retried, but only this many times
// in a row: they usually mean a client bug that reconnecting will not fix.
const MAX_UNLISTED_CLOSE_RETRIES = 5;
const RECONNECT_CLOSE_CODES = new Set([1001, 1006, 1011, 1012, 1013]);
const TERMINAL_CLOSE_CODES = new Set([1000, 1002, 1009]);

/** A request the server refused: `code` is the wire error code (protocol.md section 15). */
export class CloisonError extends Error {
  constructor(code, message, { retryable = false, retryAfterMs = null } = {}) {
    super(message);
    this.name = "CloisonError";
    this.code = code;
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The connection closed before the request was answered; it was not retried. */
export class ConnectionLostError extends Error {
  constructor() {
    super("connection lost before the reply");
    this.name = "ConnectionLostError";
  }
}

/**
 * Whether a close code means "reconnect and resume" (protocol.md section 16).
 *
 * Args: code, the WebSocket close code; unlistedFailures, how many unlisted codes in a row
 * were seen before this one.
 * Returns: true to reconnect.
 */
export function shouldReconnect(code, unlistedFailures = 0) {
  if (code >= 4000 && code <= 4999) return code < 4500;
  if (RECONNECT_CLOSE_CODES.has(code)) return true;
  if (TERMINAL_CLOSE_CODES.has(code)) return false;
  return unlistedFailures < MAX_UNLISTED_CLOSE_RETRIES;
}

/** Whether protocol.md section 16 lists `code` (unlisted codes are retried only so often). */
export function isListedCloseCode(code) {
  return RECONNECT_CLOSE_CODES.has(code) || TERMINAL_CLOSE_CODES.has(code);
}

/** Full-jitter exponential backoff: spreads a crowd of clients after a server restart. */
export function reconnectDelayMs(attempt, random = Math.random) {
  return Math.floor(random() * Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt));
}

/**
 * A fresh idempotency key. `crypto.randomUUID` exists only in secure contexts, and a
 * self-hosted server is often reached over plain HTTP on a LAN, so build one from
 * `getRandomValues`, which works everywhere.
 */
export function newMessageId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The error a terminal close stands for when no `error` frame said it first (a revoked
// token is closed with 4500 and nothing else).
const CLOSE_ERRORS = new Map([
  [4500, "unauthorized"],
  [4501, "unsupported_version"],
  [1009, "too_large"],
]);

export function closeError(code, reason) {
  const errorCode = CLOSE_ERRORS.get(code) ?? `closed_${code}`;
  return new CloisonError(errorCode, reason || `connection closed (${code})`);
}

/** The `CloisonError` an `error` frame stands for. */
export function toError(frame) {
  return new CloisonError(frame.code, frame.message, {
    retryable: frame.retryable,
    retryAfterMs: frame.retry_after_ms ?? null,
  });
}

/** A promise with its `resolve` and `reject` at hand. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
