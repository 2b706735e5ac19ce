/**
 * session.js: the connection and session layer of the Cloison client (see cloison.js for the
 * theory of operation): one WebSocket at a time, authentication, reconnect with backoff,
 * heartbeat, replies matched by `ref`, the write outbox, and per-sphere positions that make
 * resumed subscriptions deliver each event exactly once. The typed request helpers live
 * in cloison.js, on `CloisonClient`, which extends this class.
 */

import {
  CloisonError,
  closeError,
  ConnectionLostError,
  deferred,
  isListedCloseCode,
  PROTOCOL_VERSION,
  reconnectDelayMs,
  shouldReconnect,
  SUBPROTOCOL,
  toError,
} from "./wire.js";

// A connection that stayed up this long resets the backoff, so one flap does not make the
// next outage wait 30 s.
const STABLE_AFTER_MS = 60_000;
// Used until `welcome` announces the server's idle timeout.
const DEFAULT_IDLE_TIMEOUT_MS = 90_000;
// Without any frame from the server this long after a ping, the socket is presumed dead
// (a laptop waking up, a NAT forgetting us): browsers may not notice for minutes otherwise.
const PONG_TIMEOUT_MS = 15_000;
// The server forwards at most one typing notice per user and sphere every 2 s; sending more
// only costs bandwidth.
const TYPING_INTERVAL_MS = 2_000;
// A retryable write error (`rate_limited`, `unavailable`, `unknown`, `internal`) is retried,
// with the same message_id, this often before the write is reported as failed.
const MAX_WRITE_ATTEMPTS = 5;

// Appends to a sphere's stream: acknowledged with `ack`, idempotent on `message_id`.
const WRITE_TYPES = new Set(["publish", "edit", "delete", "react", "unreact", "pin", "unpin"]);

/**
 * A connection to one Cloison server for one token.
 *
 * Events (subscribe with `on(type, listener)`, which returns a function that unsubscribes):
 * - `state`       `{state, code, reason, delayMs, error}`; `state` is one of `connecting`,
 *                 `online`, `reconnecting`, `closed`.
 * - `welcome`     the server's `welcome` frame, after every (re)connection.
 * - `subscribed`  `{sphereId, position, online, resumed}`; `resumed` is false when the
 *                 client holds no position for the sphere (first subscription, or after a
 *                 `reset`): load older messages with `history({before: position.offset + 1})`.
 * - `reset`       `{sphereId}`: the sphere's epoch changed, drop everything held for it.
 * - `message`     a `message` frame (post, edit, delete, member or sphere event; ignore kinds
 *                 you do not know): each offset exactly once, in order.
 * - `replayed`    `{sphereId, position}`: a resumed subscription has caught up and is live.
 * - `presence`    a `presence` frame; `typing` `{sphereId, userId}`.
 * - `unsubscribed` `{sphereId, reason: "access_revoked"}` when the user lost access, live or
 *                 found on a resume; the sphere is forgotten and not resumed again.
 * - `unsubscribed` also ends a sphere that was deleted (`reason: "deleted"`).
 * - `charter_required` `{sphereId}`: the sphere has a charter the user must accept before
 *                 reading (on a subscribe, a resume, or a new version set while subscribed).
 *                 The sphere is paused, its position kept: call `acceptCharter`, then
 *                 `subscribe` again to resume from where it stopped.
 */
export class CloisonSession {
  #url;
  #token;
  #WebSocket;
  #ws = null;
  #state = "idle";
  #listeners = new Map();
  #pending = new Map(); // ref -> {frame, resolve, reject, attempts}
  #refs = 0;
  #streams = new Map(); // sphere_id -> {sphereId, position, resyncing, waiters}
  #typingSentAt = new Map();
  #attempt = 0;
  #unlistedFailures = 0;
  #authError = null;
  #dropReason = null;
  #idleTimeoutMs = DEFAULT_IDLE_TIMEOUT_MS;
  #timers = { reconnect: null, heartbeat: null, pong: null, stable: null };
  #firstWelcome = null;

  /** The `welcome` frame of the current connection (null before the first). */
  welcome = null;

  /**
   * Args: url, the server's `ws://` or `wss://` URL of `/ws`; token, a `clo_...` token, or a
   * function resolving to one (a sign-in session's access token, fresh at each connection);
   * options.WebSocket, a WebSocket constructor (for tests or other runtimes).
   * Call `connect()` next.
   */
  constructor(url, token, { WebSocket: WebSocketImpl = globalThis.WebSocket } = {}) {
    this.#url = url;
    this.#token = token;
    this.#WebSocket = WebSocketImpl;
  }

  /** `idle`, `connecting`, `online`, `reconnecting` or `closed`. */
  get state() {
    return this.#state;
  }

  /** The signed-in user's id (after the first welcome). */
  get userId() {
    return this.welcome?.user_id ?? null;
  }

  /** Listen for an event (see the class comment). Returns a function that stops listening. */
  on(type, listener) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(listener);
    return () => this.#listeners.get(type)?.delete(listener);
  }

  /**
   * Open the connection. Resolves with the first `welcome`; rejects with a `CloisonError`
   * (`unauthorized`, ...) if the server refuses the token before ever welcoming it. The
   * client then keeps reconnecting by itself until `close()`.
   */
  connect() {
    if (!this.#firstWelcome) {
      this.#firstWelcome = deferred();
      this.#open();
    }
    return this.#firstWelcome.promise;
  }

  /** Close for good: no reconnection; pending requests reject with ConnectionLostError. */
  close() {
    this.#setState("closed", { code: 1000, reason: "closed by the client" });
    this.#clearTimers();
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000);
    this.#rejectPending(() => true);
    this.#firstWelcome?.reject(new ConnectionLostError());
  }

  /** Skip the remaining backoff (e.g. when the browser reports it is back online). */
  reconnectNow() {
    if (this.#state !== "reconnecting" || this.#ws) return;
    clearTimeout(this.#timers.reconnect);
    this.#open();
  }

  /**
   * Send a request frame and resolve with its reply (matched by `ref`).
   *
   * Rejects with a `CloisonError` on an `error` reply, or a `ConnectionLostError` if the
   * connection closes first. Writes (`publish`, `edit`, `delete`) are not rejected on
   * connection loss: they are resent with the same `message_id` after the reconnect.
   */
  request(frame) {
    const ref = `r${++this.#refs}`;
    const entry = { frame: { ...frame, ref }, attempts: 0, ...deferred() };
    this.#pending.set(ref, entry);
    if (this.#state === "online") {
      this.#sendRequest(entry);
    } else if (this.#state === "closed" || !WRITE_TYPES.has(frame.type)) {
      this.#pending.delete(ref);
      entry.reject(new ConnectionLostError());
    }
    return entry.promise;
  }

  /**
   * Subscribe to a sphere and keep the subscription across reconnects.
   *
   * Resolves with the `subscribed` frame of the first successful subscription (which may
   * come after a reconnect); rejects with a `CloisonError` (`not_found`, `forbidden`) if the
   * server refuses it, and the sphere is then forgotten.
   */
  subscribe(sphereId) {
    let stream = this.#streams.get(sphereId);
    if (!stream) {
      stream = { sphereId, position: null, resyncing: false, paused: false, waiters: [] };
      this.#streams.set(sphereId, stream);
      if (this.#state === "online") this.#sendSubscribe(stream);
    } else if (stream.paused) {
      stream.paused = false; // the charter was accepted: resume from the position
      if (this.#state === "online") this.#sendSubscribe(stream);
    }
    const waiter = deferred();
    if (stream.position) waiter.resolve({ sphere_id: sphereId, position: stream.position });
    else stream.waiters.push(waiter);
    return waiter.promise;
  }

  /** Stop receiving a sphere's events and forget its position. */
  async unsubscribe(sphereId) {
    const stream = this.#streams.get(sphereId);
    this.#streams.delete(sphereId);
    stream?.waiters.forEach((w) => w.reject(new ConnectionLostError()));
    if (this.#state === "online") {
      await this.request({ type: "unsubscribe", sphere_id: sphereId });
    }
  }

  /** The (offset, epoch) of the last event of a sphere delivered to the application. */
  position(sphereId) {
    return this.#streams.get(sphereId)?.position ?? null;
  }

  /**
   * One page of posts in their current state, ascending by offset.
   *
   * Args: `before` (newest posts with offset < before) or `after`, and `limit` (1-200).
   * Returns: `{messages, hasMore}`.
   */

  /** Tell the sphere the user is typing; call on every keystroke, it throttles itself. */
  typing(sphereId) {
    const now = Date.now();
    if (now - (this.#typingSentAt.get(sphereId) ?? 0) < TYPING_INTERVAL_MS) return;
    if (this.#state !== "online") return;
    this.#typingSentAt.set(sphereId, now);
    this.#send({ type: "typing", sphere_id: sphereId });
  }



  #open() {
    if (this.#state === "idle") this.#setState("connecting"); // else stays "reconnecting"
    this.#authError = null;
    this.#dropReason = null;
    let ws;
    try {
      ws = new this.#WebSocket(this.#url, [SUBPROTOCOL]);
    } catch (error) {
      // A malformed URL: no retry can fix it.
      this.#fail(new CloisonError("bad_url", String(error)));
      return;
    }
    this.#ws = ws;
    ws.onopen = () => this.#authenticate(ws);
    ws.onmessage = (event) => this.#onData(ws, event.data);
    ws.onclose = (event) => this.#onClose(ws, event);
  }

  /** Send `auth` with the token, or with what the token source gives (a fresh access token). */
  async #authenticate(ws) {
    let token = this.#token;
    if (typeof token === "function") {
      try {
        token = await token();
      } catch (error) {
        if (ws !== this.#ws) return;
        if (error?.code === "unauthorized") {
          this.#fail(new CloisonError("unauthorized", error.message));
          this.#ws = null;
          ws.close(1000);
        } else {
          this.#drop("no access token yet"); // the server or network is away: retry later
        }
        return;
      }
    }
    if (ws === this.#ws) this.#send({ type: "auth", token, protocol: PROTOCOL_VERSION });
  }

  #onWelcome(frame) {
    // Only unacknowledged writes survive a close. Take them before anything below (the
    // subscribes, the listeners' requests) adds to the pending requests.
    const outbox = [...this.#pending.values()];
    this.welcome = frame;
    this.#idleTimeoutMs = frame.limits?.idle_timeout_ms ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#unlistedFailures = 0;
    this.#timers.stable = setTimeout(() => (this.#attempt = 0), STABLE_AFTER_MS);
    this.#setState("online");
    this.#emit("welcome", frame);
    this.#firstWelcome?.resolve(frame);
    // Resume before resending writes, so the replay precedes our own new events.
    for (const stream of this.#streams.values()) {
      stream.resyncing = false;
      if (!stream.paused) this.#sendSubscribe(stream);
    }
    outbox.forEach((entry) => this.#sendRequest(entry));
  }

  #onClose(ws, event) {
    if (ws !== this.#ws) return; // an old socket we already gave up on
    this.#ws = null;
    this.#clearTimers();
    this.#rejectPending((entry) => !WRITE_TYPES.has(entry.frame.type));
    if (this.#state === "closed") return;
    const code = event.code;
    const listed = isListedCloseCode(code);
    const reconnect = this.#dropReason !== null || shouldReconnect(code, this.#unlistedFailures);
    if (!reconnect) {
      const error = this.#authError ?? closeError(code, event.reason);
      this.#fail(error, code, event.reason);
      return;
    }
    if (code < 4000 && !listed) this.#unlistedFailures += 1;
    const delayMs = reconnectDelayMs(this.#attempt++);
    this.#setState("reconnecting", { code, reason: this.#dropReason ?? event.reason, delayMs });
    this.#timers.reconnect = setTimeout(() => this.#open(), delayMs);
  }

  #fail(error, code = null, reason = "") {
    this.#setState("closed", { code, reason: reason || error.message, error });
    this.#rejectPending(() => true);
    this.#firstWelcome?.reject(error);
  }

  /**
   * Give up on a socket that looks dead and reconnect now: a closing handshake over a dead
   * link can take minutes, so do not wait for its `close` event (it is ignored when it comes).
   */
  #drop(reason) {
    const ws = this.#ws;
    if (!ws) return;
    this.#dropReason = reason;
    ws.close(4000, reason);
    this.#onClose(ws, { code: 4000, reason });
  }

  #clearTimers() {
    for (const timer of Object.values(this.#timers)) clearTimeout(timer);
  }

  #setState(state, detail = {}) {
    this.#state = state;
    this.#emit("state", { state, code: null, reason: "", delayMs: null, error: null, ...detail });
  }

  // -- frames in ---------------------------------------------------------------------

  #onData(ws, data) {
    if (ws !== this.#ws) return;
    clearTimeout(this.#timers.pong); // any frame proves the connection is alive
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // the server sends only JSON on this subprotocol; ignore garbage
    }
    this.#dispatch(frame);
  }

  #dispatch(frame) {
    // Everything here runs synchronously, frame by frame: state that later frames of the
    // same batch depend on (a `subscribed` position) must be in place before they are read.
    switch (frame.type) {
      case "batch":
        frame.frames.forEach((inner) => this.#dispatch(inner));
        return;
      case "welcome":
        this.#onWelcome(frame);
        return;
      case "message":
        this.#onMessage(frame);
        return;
      case "subscribed":
        this.#onSubscribed(frame);
        break;
      case "unsubscribed":
        this.#onUnsubscribed(frame);
        break;
      case "replayed":
        if (this.#streams.has(frame.sphere_id)) {
          this.#emit("replayed", { sphereId: frame.sphere_id, position: frame.position });
        }
        return;
      case "presence":
        this.#emit("presence", frame);
        return;
      case "user_typing":
        this.#emit("typing", { sphereId: frame.sphere_id, userId: frame.user_id });
        return;
      case "error":
        if (this.#state !== "online") this.#authError = toError(frame); // auth refused
        break;
      default:
        break;
    }
    if (frame.ref !== undefined) this.#settle(frame);
  }

  #settle(reply) {
    const entry = this.#pending.get(reply.ref);
    if (!entry) return;
    if (reply.type !== "error") {
      this.#pending.delete(reply.ref);
      entry.resolve(reply);
      return;
    }
    const error = toError(reply);
    const isWrite = WRITE_TYPES.has(entry.frame.type);
    // A resent delete finds its post already gone: the earlier attempt had succeeded.
    const alreadyDeleted =
      entry.frame.type === "delete" && error.code === "not_found" && entry.attempts > 1;
    if (alreadyDeleted) {
      this.#pending.delete(reply.ref);
      entry.resolve(null);
      return;
    }
    if (isWrite && error.retryable && entry.attempts < MAX_WRITE_ATTEMPTS) {
      const waitMs = error.retryAfterMs ?? reconnectDelayMs(entry.attempts);
      setTimeout(() => this.#state === "online" && this.#sendRequest(entry), waitMs);
      return;
    }
    this.#pending.delete(reply.ref);
    entry.reject(error);
  }

  #onSubscribed(frame) {
    const stream = this.#streams.get(frame.sphere_id);
    if (!stream) return;
    const resumed = stream.position !== null;
    // With `since`, the replay that follows may start below `position.offset`: keep our own
    // position and let the replayed messages move it.
    if (!resumed) stream.position = { ...frame.position };
    stream.resyncing = false;
    stream.waiters.splice(0).forEach((w) => w.resolve(frame));
    this.#emit("subscribed", {
      sphereId: frame.sphere_id,
      position: frame.position,
      online: frame.online,
      resumed,
    });
  }

  #onUnsubscribed(frame) {
    const stream = this.#streams.get(frame.sphere_id);
    if (!stream || frame.reason === "requested") return;
    if (frame.reason === "charter") {
      this.#pause(stream);
      return;
    }
    this.#streams.delete(frame.sphere_id);
    this.#emit("unsubscribed", { sphereId: frame.sphere_id, reason: frame.reason });
  }

  /** A new charter to accept: stop, keep the position, and say so. */
  #pause(stream) {
    stream.paused = true;
    this.#emit("charter_required", { sphereId: stream.sphereId });
  }

  #onMessage(frame) {
    const stream = this.#streams.get(frame.sphere_id);
    if (!stream?.position) return;
    const last = stream.position.offset;
    if (frame.offset <= last) return; // already delivered: an overlapping resume
    if (frame.offset > last + 1) {
      // The server promises no gaps; should one appear anyway, replay from what we have.
      // Later frames past the gap are dropped until the new subscription answers.
      if (!stream.resyncing) {
        stream.resyncing = true;
        this.#sendSubscribe(stream);
      }
      return;
    }
    stream.position = { offset: frame.offset, epoch: stream.position.epoch };
    this.#emit("message", frame);
  }

  // -- frames out --------------------------------------------------------------------

  #sendSubscribe(stream) {
    const frame = { type: "subscribe", sphere_id: stream.sphereId };
    if (stream.position) frame.since = { ...stream.position };
    this.request(frame).catch((error) => this.#onSubscribeFailed(stream, error));
  }

  #onSubscribeFailed(stream, error) {
    if (this.#streams.get(stream.sphereId) !== stream) return; // unsubscribed meanwhile
    if (error instanceof ConnectionLostError) return; // resumed after the reconnect
    if (error.code === "unrecoverable_position") {
      stream.position = null;
      this.#emit("reset", { sphereId: stream.sphereId });
      this.#sendSubscribe(stream);
      return;
    }
    stream.waiters.splice(0).forEach((w) => w.reject(error));
    if (error.code === "charter_required") {
      this.#pause(stream);
      return;
    }
    this.#streams.delete(stream.sphereId);
    // Refused on a resume (`not_found`, `forbidden`): access was lost while we were away.
    if (stream.position) {
      this.#emit("unsubscribed", { sphereId: stream.sphereId, reason: "access_revoked" });
    }
  }

  #sendRequest(entry) {
    entry.attempts += 1;
    this.#send(entry.frame);
  }

  #send(frame) {
    if (!this.#ws || this.#ws.readyState !== this.#WebSocket.OPEN) return;
    this.#ws.send(JSON.stringify(frame));
    this.#armHeartbeat();
  }

  /** Ping when nothing was sent for a third of the idle timeout (protocol.md section 18). */
  #armHeartbeat() {
    clearTimeout(this.#timers.heartbeat);
    this.#timers.heartbeat = setTimeout(() => {
      this.#send({ type: "ping" });
      clearTimeout(this.#timers.pong);
      this.#timers.pong = setTimeout(() => this.#drop("no reply to ping"), PONG_TIMEOUT_MS);
    }, this.#idleTimeoutMs / 3);
  }

  #rejectPending(predicate) {
    for (const [ref, entry] of this.#pending) {
      if (!predicate(entry)) continue;
      this.#pending.delete(ref);
      entry.reject(new ConnectionLostError());
    }
  }

  #emit(type, detail) {
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        listener(detail);
      } catch (error) {
        // One broken listener must not stop delivery to the others, nor the client.
        console.error(`cloison: a "${type}" listener failed`, error);
      }
    }
  }
}
