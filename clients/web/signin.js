/**
 * signin.js: the sign-in page and the life of the tab's credentials. The chat itself is
 * started by app.js through the callback given to `bootSignIn`, with a token source: a
 * function that resolves to a live access token.
 *
 * Three ways in (docs/protocol.md, section 29): an e-mail and a password; "Sign in with
 * <organisation>" (single sign-on: the server sends the browser to the organisation's provider
 * and back to this page, with a one-time code in an HttpOnly cookie that only
 * POST /api/v1/auth/session can read, and exchanges once); or a pasted token (bots, enrolment).
 *
 * A sign-in session's tokens live in sessionStorage, never in localStorage or a URL: they die
 * with the tab and never reach history, logs or a Referer. The access token lasts minutes; it
 * is refreshed a minute before it expires (and on demand at a reconnect), each refresh
 * replacing both tokens. The WebSocket belongs to the session, so a refresh does not touch it.
 */

import { ui } from "./page.js";

const TOKEN_KEY = "cloison.token"; // a pasted token
const SESSION_KEY = "cloison.session"; // a sign-in session's tokens (JSON)
// Carries a sign-in error across the reload that resets the page after a refused token.
const SIGNIN_ERROR_KEY = "cloison.signin-error";
// Refresh this long before the access token expires, so a reconnect never presents a dead one.
const REFRESH_EARLY_MS = 60_000;
const API = "/api/v1";
const SSO_ERRORS = {
  forbidden: "Your organisation does not let this account sign in here.",
  unauthorized: "The single sign-on did not complete. Try again.",
  unavailable: "The sign-in provider cannot be reached right now.",
  provider_refused: "The sign-in provider refused the sign-in.",
};

// Set by bootSignIn: opens the chat with a token source.
let startChat = null;
let refreshTimer = null;
let refreshing = null; // the refresh under way, shared by whoever asks meanwhile

/** Show the sign-in page, or go straight to the chat with the tab's credentials. */
export async function bootSignIn(start) {
  startChat = start;
  ui.signinForm.addEventListener("submit", onToken);
  ui.passwordForm.addEventListener("submit", onPassword);
  const carried = JSON.parse(sessionStorage.getItem(SIGNIN_ERROR_KEY) ?? "{}");
  sessionStorage.removeItem(SIGNIN_ERROR_KEY);
  let error = carried.error ?? "";
  // After a refused pasted token, the token field is where the person goes back to.
  const focus = carried.token ? ui.tokenInput : ui.emailInput;
  const ssoError = new URLSearchParams(location.hash.slice(1)).get("signin_error");
  if (ssoError !== null) {
    error = SSO_ERRORS[ssoError] ?? SSO_ERRORS.unauthorized;
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (storedSession()) {
    startSession();
    return;
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    startChat(token);
    return;
  }
  // Back from single sign-on? The cookie is invisible to this script: just ask, once.
  if (!error && (await exchange("/auth/session", {}))) return;
  showSignIn(error, focus);
  listProviders();
}

function showSignIn(error, focus = ui.emailInput) {
  ui.chat.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.textContent = error;
  ui.tokenInput.setAttribute("aria-invalid", error && focus === ui.tokenInput ? "true" : "false");
  focus.focus();
}

function onToken(event) {
  event.preventDefault();
  const token = ui.tokenInput.value.trim();
  if (!token) {
    showSignIn("Enter your access token.", ui.tokenInput);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.tokenInput.value = "";
  startChat(token);
}

async function onPassword(event) {
  event.preventDefault();
  const email = ui.emailInput.value.trim();
  const password = ui.passwordInput.value;
  if (!email || !password) {
    showSignIn("Enter your e-mail and your password.", email ? ui.passwordInput : ui.emailInput);
    return;
  }
  const signedIn = await exchange("/auth/password", { email, password });
  ui.passwordInput.value = "";
  if (!signedIn) ui.passwordInput.focus();
}

/** POST a sign-in; on success keep the session and open the chat. */
async function exchange(path, body) {
  let reply;
  try {
    reply = await post(path, body);
  } catch {
    showSignIn("The server cannot be reached. Try again.");
    return false;
  }
  if (reply.ok) {
    keep(await reply.json());
    startSession();
    return true;
  }
  if (path === "/auth/session") return false; // nothing to complete: not an error
  const problem = await reply.json().catch(() => ({}));
  const wait = problem.retry_after_ms ? ` Try again in ${Math.ceil(problem.retry_after_ms / 1000)} s.` : "";
  showSignIn(
    reply.status === 429 ? `Too many attempts.${wait}` : "Wrong e-mail or password.",
    ui.passwordInput,
  );
  return false;
}

function post(path, body, token = null) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(API + path, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
}

/** "Sign in with <organisation>" for each organisation with single sign-on. */
async function listProviders() {
  let providers = [];
  try {
    const reply = await fetch(`${API}/auth/providers`, { cache: "no-store" });
    if (reply.ok) providers = (await reply.json()).providers;
  } catch {
    return; // password and token sign-in still work
  }
  ui.ssoProviders.replaceChildren(
    ...providers.map(({ org_id: orgId, name }) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sso";
      button.textContent = `Sign in with ${name}`; // a name is only ever text
      button.addEventListener("click", () => {
        location.assign(`${API}/auth/oidc/${encodeURIComponent(orgId)}/start`);
      });
      return button;
    }),
  );
  ui.ssoProviders.hidden = providers.length === 0;
}

// -- a sign-in session's tokens ---------------------------------------------------------

function storedSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
  } catch {
    return null;
  }
}

function keep(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  scheduleRefresh(session);
}

function scheduleRefresh(session) {
  clearTimeout(refreshTimer);
  const inMs = Math.max(0, session.access_expires_ms - REFRESH_EARLY_MS - Date.now());
  refreshTimer = setTimeout(() => accessToken({ force: true }).catch(() => {}), inMs);
}

function startSession() {
  const session = storedSession();
  scheduleRefresh(session);
  startChat(() => accessToken());
}

/**
 * A live access token: the stored one, or a fresh one from the refresh token. Rejects with
 * an `unauthorized` error when the session has ended (the chat then signs out).
 */
export function accessToken({ force = false } = {}) {
  const session = storedSession();
  if (!session) return Promise.reject(ended());
  if (!force && session.access_expires_ms - Date.now() > REFRESH_EARLY_MS) {
    return Promise.resolve(session.access_token);
  }
  refreshing ??= refresh(session).finally(() => (refreshing = null));
  return refreshing;
}

async function refresh(session) {
  const reply = await post("/auth/refresh", { refresh_token: session.refresh_token });
  if (!reply.ok) {
    if (reply.status === 401) {
      sessionStorage.removeItem(SESSION_KEY);
      throw ended();
    }
    throw new Error(`refresh failed: HTTP ${reply.status}`);
  }
  const fresh = await reply.json();
  keep(fresh);
  return fresh.access_token;
}

function ended() {
  return Object.assign(new Error("your session has ended: sign in again"), {
    code: "unauthorized",
  });
}

/** Forget the credentials and start over from a clean page (all state lives in memory). */
export async function signOut(error = "") {
  clearTimeout(refreshTimer);
  const session = storedSession();
  const pasted = sessionStorage.getItem(TOKEN_KEY) !== null;
  if (session && !error) {
    // End the session on the server too, so its refresh token is worth nothing.
    const token = await accessToken().catch(() => null);
    if (token) {
      await fetch(`${API}/me/sessions/${encodeURIComponent(session.session_id)}`, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${token}` },
        keepalive: true,
      }).catch(() => {});
    }
  }
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(SESSION_KEY);
  if (error) sessionStorage.setItem(SIGNIN_ERROR_KEY, JSON.stringify({ error, token: pasted }));
  location.reload();
}
