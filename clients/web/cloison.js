/**
 * cloison.js: a small browser client for the Cloison wire protocol (docs/protocol.md).
 *
 * Theory of operation
 * -------------------
 * One `CloisonClient` owns at most one WebSocket at a time. It authenticates with a token,
 * matches replies to requests by `ref`, and survives disconnections: on a close code that
 * says "reconnect" (protocol.md section 16) it waits a jittered exponential backoff, opens a
 * new socket, and resumes every subscribed sphere with `since` = the position of the last
 * event it handed to the application. Events whose offset is not above that position are
 * dropped, so the application sees each event of a sphere exactly once and in offset order,
 * across any number of reconnects.
 *
 * Writes (`publish` and replies, `edit`, `delete`, `react`, `unreact`, `pin`, `unpin`) stay
 * in an outbox until acknowledged and are resent
 * with the same `message_id` after a reconnect: the server stores a key at most once, so a
 * resend can never duplicate a message.
 *
 * The module has no dependencies and needs only `WebSocket` and `crypto.getRandomValues`.
 *
 * Usage
 * -----
 *     import { CloisonClient } from "./cloison.js";
 *     const client = new CloisonClient("wss://chat.example/ws", token);
 *     client.on("message", (event) => render(event));   // each offset once, in order
 *     client.on("state", ({ state }) => showState(state));
 *     await client.connect();                               // resolves on the first welcome
 *     const { spheres } = await client.listSpheres();
 *     await client.subscribe(spheres[0].sphere_id);
 *     await client.publish(spheres[0].sphere_id, "hello");
 *
 * See clients/web/README.md for the whole API.
 */

import { CloisonSession } from "./session.js";
import { newMessageId } from "./wire.js";

export {
  CloisonError,
  ConnectionLostError,
  newMessageId,
  PROTOCOL_VERSION,
  reconnectDelayMs,
  shouldReconnect,
  SUBPROTOCOL,
} from "./wire.js";

/**
 * A Cloison client: the session of `CloisonSession` (connection, events, `request`,
 * `subscribe`) plus one method per request of the protocol. See session.js for the events.
 */
export class CloisonClient extends CloisonSession {
  /** `sphere_list` of the caller's spheres with unread counts (or `discover: true`), all pages. */
  listSpheres({ discover = false } = {}) {
    return allPages(this, { type: "list_spheres", discover }, "spheres");
  }

  /** `member_list` of a sphere, every page: `{members: [{user_id, name, kind, role}]}`. */
  listMembers(sphereId) {
    return allPages(this, { type: "list_members", sphere_id: sphereId }, "members");
  }


  async history(sphereId, { before, after, limit } = {}) {
    const frame = { type: "history", sphere_id: sphereId };
    if (before !== undefined) frame.before = before;
    if (after !== undefined) frame.after = after;
    if (limit !== undefined) frame.limit = limit;
    const page = await this.request(frame);
    return { messages: page.messages, hasMore: page.has_more };
  }

  /**
   * Page backwards through a sphere's history, newest page first.
   *
   *     for await (const page of client.olderPages(id, { before: 120 })) prepend(page);
   */
  async *olderPages(sphereId, { before, limit } = {}) {
    let cursor = before;
    for (;;) {
      const { messages, hasMore } = await this.history(sphereId, { before: cursor, limit });
      if (messages.length) yield messages;
      if (!hasMore || !messages.length) return;
      cursor = messages[0].offset;
    }
  }

  /** Post a message. Resolves with the `ack` (its `offset`); safe to retry by `messageId`. */
  publish(sphereId, body, messageId = newMessageId()) {
    return this.request({ type: "publish", sphere_id: sphereId, message_id: messageId, body });
  }

  /** Replace the body of the post at offset `target`. Resolves with the `ack`. */
  edit(sphereId, target, body, messageId = newMessageId()) {
    return this.request({ type: "edit", sphere_id: sphereId, message_id: messageId, target, body });
  }

  /**
   * Delete the post at offset `target`. Resolves with the `ack`, or with null when a resend
   * found the post already deleted (the first attempt had succeeded; protocol.md section 7).
   */
  delete(sphereId, target, messageId = newMessageId()) {
    return this.request({ type: "delete", sphere_id: sphereId, message_id: messageId, target });
  }

  // -- conversations (protocol.md section 22): stream writes, resent like `publish` --------

  /** Post `body` as a reply to the post at offset `replyTo`. Resolves with the `ack`. */
  reply(sphereId, replyTo, body, messageId = newMessageId()) {
    const frame = { type: "publish", sphere_id: sphereId, message_id: messageId, body };
    return this.request({ ...frame, reply_to: replyTo });
  }

  /** React to the post at `target` with `emoji` (`unreact` withdraws it). */
  react(sphereId, target, emoji, messageId = newMessageId()) {
    const frame = { type: "react", sphere_id: sphereId, message_id: messageId, target, emoji };
    return this.request(frame);
  }

  unreact(sphereId, target, emoji, messageId = newMessageId()) {
    const frame = { type: "unreact", sphere_id: sphereId, message_id: messageId, target, emoji };
    return this.request(frame);
  }

  /** Pin (or, with `pinned` false, unpin) the post at `target`. */
  pin(sphereId, target, pinned = true, messageId = newMessageId()) {
    const type = pinned ? "pin" : "unpin";
    return this.request({ type, sphere_id: sphereId, message_id: messageId, target });
  }

  /** The pinned posts, ascending: `{messages}`. */
  listPins(sphereId) {
    return this.request({ type: "list_pins", sphere_id: sphereId });
  }

  /** `thread_page`: the post at `root` and its replies in stream order. */
  thread(sphereId, root, { after, limit } = {}) {
    return this.request(compact({ type: "get_thread", sphere_id: sphereId, root, after, limit }));
  }

  /** `thread_list`: posts with replies, most recently answered first (one page). */
  listThreads(sphereId, { after, limit } = {}) {
    return this.request(compact({ type: "list_threads", sphere_id: sphereId, after, limit }));
  }

  /** `mention_list`: posts that mention the user across their spheres, newest first. */
  listMentions({ after, limit } = {}) {
    return this.request(compact({ type: "list_mentions", after, limit }));
  }

  /** Report the post at `target`: `reason` is `spam`, `abusive` or `other`. */
  report(sphereId, target, reason, comment = "") {
    const frame = { type: "report", sphere_id: sphereId, target, reason, comment: comment || null };
    return this.request(compact(frame));
  }

  // -- spheres and membership (protocol.md sections 20, 21) -----------------------------

  /**
   * `sphere_info` of a new sphere: `settings` are `{privacy, listed, join_policy, history,
   * org_id}` (`org_id` absent: the caller's only organisation).
   */
  createSphere(name, settings = {}) {
    return this.request(compact({ type: "create_sphere", name, ...settings }));
  }

  /** Change some settings: `{name, privacy, listed, join_policy, history}`. */
  updateSphere(sphereId, settings) {
    return this.request(compact({ type: "update_sphere", sphere_id: sphereId, ...settings }));
  }

  deleteSphere(sphereId) {
    return this.request({ type: "delete_sphere", sphere_id: sphereId });
  }

  join(sphereId) {
    return this.request({ type: "join", sphere_id: sphereId });
  }

  leave(sphereId) {
    return this.request({ type: "leave", sphere_id: sphereId });
  }

  requestJoin(sphereId, comment = "") {
    return this.request(compact({ type: "request_join", sphere_id: sphereId, comment }));
  }

  withdrawRequest(sphereId) {
    return this.request({ type: "withdraw_request", sphere_id: sphereId });
  }

  /** Pending invitations, every page: the user's own, or (with `sphereId`) a sphere's. */
  listInvitations(sphereId = null) {
    const frame = compact({ type: "list_invitations", sphere_id: sphereId });
    return allPages(this, frame, "invitations");
  }

  /** `invitation_info` of an invitation of `userId` with `role`. */
  invite(sphereId, userId, role = "member") {
    return this.request({ type: "invite", sphere_id: sphereId, user_id: userId, role });
  }

  /** `sphere_info` of the sphere entered. */
  acceptInvitation(invitationId) {
    return this.request({ type: "accept_invitation", invitation_id: invitationId });
  }

  declineInvitation(invitationId) {
    return this.request({ type: "decline_invitation", invitation_id: invitationId });
  }

  revokeInvitation(invitationId) {
    return this.request({ type: "revoke_invitation", invitation_id: invitationId });
  }

  /** Pending join requests, every page: `{requests: [{user_id, name, comment, ...}]}`. */
  listRequests(sphereId) {
    return allPages(this, { type: "list_requests", sphere_id: sphereId }, "requests");
  }

  answerRequest(sphereId, userId, accept) {
    const frame = { type: "answer_request", sphere_id: sphereId, user_id: userId, accept };
    return this.request(frame);
  }

  removeMember(sphereId, userId) {
    return this.request({ type: "remove_member", sphere_id: sphereId, user_id: userId });
  }

  setRole(sphereId, userId, role) {
    return this.request({ type: "set_role", sphere_id: sphereId, user_id: userId, role });
  }

  ban(sphereId, userId, reason = "") {
    return this.request(compact({ type: "ban", sphere_id: sphereId, user_id: userId, reason }));
  }

  unban(sphereId, userId) {
    return this.request({ type: "unban", sphere_id: sphereId, user_id: userId });
  }

  listBans(sphereId) {
    return allPages(this, { type: "list_bans", sphere_id: sphereId }, "bans");
  }

  /** Mute a member for `durationS` seconds (60 s to a year). */
  mute(sphereId, userId, durationS) {
    const frame = { type: "mute", sphere_id: sphereId, user_id: userId, duration_s: durationS };
    return this.request(frame);
  }

  unmute(sphereId, userId) {
    return this.request({ type: "unmute", sphere_id: sphereId, user_id: userId });
  }

  transferOwnership(sphereId, userId) {
    return this.request({ type: "transfer_ownership", sphere_id: sphereId, user_id: userId });
  }

  /** `charter_info`: `{version, text, accepted}` (version 0: no charter). */
  getCharter(sphereId) {
    return this.request({ type: "get_charter", sphere_id: sphereId });
  }

  setCharter(sphereId, text) {
    return this.request({ type: "set_charter", sphere_id: sphereId, text });
  }

  acceptCharter(sphereId, version) {
    return this.request({ type: "accept_charter", sphere_id: sphereId, version });
  }

  /** `audit_list`: one page of the audit log, newest first (`before`: an entry's `seq`). */
  listAudit(sphereId, { before, limit } = {}) {
    return this.request(compact({ type: "list_audit", sphere_id: sphereId, before, limit }));
  }

  /** `report_list`: one page of the sphere's reports, newest first. */
  listReports(sphereId, { before, limit } = {}) {
    return this.request(compact({ type: "list_reports", sphere_id: sphereId, before, limit }));
  }
  // -- organisations (docs/governance.md): every request but `listOrgs` names its org -----

  /** `org_list`: the caller's organisations, `{orgs: [{org_id, name, role, suspended}]}`. */
  listOrgs() {
    return this.request({ type: "list_orgs" });
  }

  /** `org_info`: `{org, policies}` (the policies the caller may see; managers: all). */
  getOrg(orgId) {
    return this.request({ type: "get_org", org_id: orgId });
  }

  /** Rename and/or change some policies (managers): `{name, policies: {key: value}}`. */
  updateOrg(orgId, { name, policies } = {}) {
    return this.request(compact({ type: "update_org", org_id: orgId, name, policies }));
  }

  /** `org_member_list`, one page: the directory by name (`query`: a name prefix). */
  listOrgMembers(orgId, { query, limit, after } = {}) {
    const frame = { type: "list_org_members", org_id: orgId, query, limit, after };
    return this.request(compact(frame));
  }

  addOrgMember(orgId, userId, role = "member") {
    return this.request({ type: "add_org_member", org_id: orgId, user_id: userId, role });
  }

  removeOrgMember(orgId, userId) {
    return this.request({ type: "remove_org_member", org_id: orgId, user_id: userId });
  }

  setOrgRole(orgId, userId, role) {
    return this.request({ type: "set_org_role", org_id: orgId, user_id: userId, role });
  }

  /** `org_audit_list`: one page of the organisation's audit log, newest first (managers). */
  listOrgAudit(orgId, { before, limit } = {}) {
    return this.request(compact({ type: "list_org_audit", org_id: orgId, before, limit }));
  }

  /** `org_sphere_list`, every page: the portal (managers: every sphere, by name and type). */
  listOrgSpheres(orgId) {
    return allPages(this, { type: "list_org_spheres", org_id: orgId }, "spheres");
  }

  /** `sphere_info`: a manager becomes the sphere's administrator; its members see it. */
  manageSphere(orgId, sphereId) {
    return this.request({ type: "manage_sphere", org_id: orgId, sphere_id: sphereId });
  }

  /** Move the user's read marker to `offset` (it never moves backwards). */
  markRead(sphereId, offset) {
    return this.request({ type: "mark_read", sphere_id: sphereId, offset });
  }

  // -- connection lifecycle ------------------------------------------------------------
}

/** Request a paged list until its reply has no `next`; one reply with every item. */
async function allPages(client, frame, key) {
  let reply = await client.request(frame);
  const items = [...reply[key]];
  while (reply.next) {
    reply = await client.request({ ...frame, after: reply.next });
    items.push(...reply[key]);
  }
  return { ...reply, [key]: items };
}

/** `frame` without its null, undefined and empty-string fields (optional on the wire). */
function compact(frame) {
  return Object.fromEntries(
    Object.entries(frame).filter(([, v]) => v !== undefined && v !== null && v !== ""),
  );
}
