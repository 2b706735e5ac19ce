/**
 * access.js: getting into spheres: creating and discovering them, the user's invitations,
 * joining or asking to, and a sphere's invitations and join requests for its staff.
 */

import { actionButton, el, stamp } from "./dom.js";
import { RANK, ROLES } from "./roles.js";
import { alertLine, checkField, explain, field, formOf, GovernancePanel, select } from "./panel.js";
import { HISTORY, POLICIES, TYPES } from "./governance-options.js";

/** The sphere-access layer of `Governance`. */
export class SphereAccess extends GovernancePanel {
  openCreate() {
    const name = el("input", { id: "new-sphere-name", required: true, maxLength: 100 });
    // The organisation's policy says which types its members create; managers create all.
    const types = this.chat.orgs.creatableTypes(TYPES);
    const type = select("new-sphere-type", types, "private");
    const listed = el("input", { id: "new-sphere-listed", type: "checkbox" });
    const policy = select("new-sphere-policy", POLICIES, "invitation");
    const history = select("new-sphere-history", HISTORY, "since_joining");
    const status = alertLine();
    // A private sphere is sealed: never listed, entered by invitation (a global one: by
    // belonging to the organisation). The other types start listed and free to enter, the
    // usual wish when choosing them.
    const isSealed = () => type.value === "private" || type.value === "global";
    let wasSealed = true;
    const sync = () => {
      const sealed = isSealed();
      policy.disabled = sealed;
      listed.disabled = sealed;
      if (sealed !== wasSealed) {
        policy.value = sealed ? "invitation" : "free";
        listed.checked = !sealed;
      }
      wasSealed = sealed;
    };
    type.addEventListener("change", sync);
    sync();
    const form = formOf("Create", status, async () => {
      const settings = { privacy: type.value, history: history.value };
      if (this.chat.orgs.orgs.length > 1) settings.org_id = this.chat.orgs.currentId;
      if (!isSealed()) {
        settings.listed = listed.checked;
        settings.join_policy = policy.value;
      }
      const reply = await this.attempt(
        () => this.client.createSphere(name.value.trim(), settings),
        status,
      );
      if (!reply) return;
      this.close();
      await this.chat.refreshSpheres();
      this.chat.navigate(reply.sphere.sphere_id);
    });
    form.prepend(
      field("Name", name),
      field("Type", type),
      checkField("Listed (shown in Discover)", listed),
      field("Who may enter", policy),
      field("What newcomers may read", history),
    );
    this.show("New sphere", form);
  }

  async openDiscover() {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Discover spheres", status, list);
    const reply = await this.attempt(() => this.client.listSpheres({ discover: true }), status);
    if (!reply) return;
    if (!reply.spheres.length) status.textContent = "No listed sphere to discover yet.";
    for (const sphere of reply.spheres) list.append(this.discoverItem(sphere, status));
  }

  discoverItem(sphere, status) {
    const item = el(
      "li",
      {},
      el("span", { className: "panel-item-name" }, sphere.name),
      el("span", { className: "hint" }, ` ${sphere.privacy}`),
    );
    item.dataset.sphereId = sphere.sphere_id;
    const enter = async () => {
      const joined = await this.attempt(() => this.client.join(sphere.sphere_id), status);
      if (!joined) return;
      this.close();
      await this.chat.refreshSpheres();
      this.chat.navigate(sphere.sphere_id);
    };
    if (sphere.role) {
      item.append(actionButton("Open", `Open ${sphere.name}`, () => this.openSphere(sphere)));
    } else if (sphere.join_policy === "approval") {
      const note = el("input", { id: `ask-${sphere.sphere_id}`, maxLength: 500 });
      const ask = actionButton("Ask to join", `Ask to join ${sphere.name}`, async () => {
        const sent = await this.attempt(
          () => this.client.requestJoin(sphere.sphere_id, note.value.trim()),
          status,
        );
        if (sent) status.textContent = `Request sent to the administrators of ${sphere.name}.`;
      });
      item.append(field(`Note to ${sphere.name} (optional)`, note), ask);
    } else if (sphere.join_policy === "free") {
      item.append(actionButton("Join", `Join ${sphere.name}`, enter));
    }
    if (sphere.privacy === "public" && !sphere.role) {
      item.append(actionButton("Read", `Read ${sphere.name}`, () => this.openSphere(sphere)));
    }
    return item;
  }

  openSphere(sphere) {
    this.close();
    this.chat.navigate(sphere.sphere_id);
  }

  async refreshInvitations() {
    try {
      const { invitations } = await this.client.listInvitations();
      this.invitations = invitations.filter((i) => i.state === "pending");
    } catch {
      return; // not answered now (offline, or an older server); the next refresh retries
    }
    const count = this.invitations.length;
    this.invitationsButton.textContent = count ? `Invitations (${count})` : "Invitations";
  }

  async openInvitations() {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Your invitations", status, list);
    await this.refreshInvitations();
    if (!this.invitations.length) status.textContent = "No pending invitation.";
    for (const invitation of this.invitations) list.append(this.invitationItem(invitation, status));
  }

  invitationItem(inv, status) {
    const item = el(
      "li",
      {},
      el("span", { className: "panel-item-name" }, inv.sphere_name),
      el(
        "span",
        { className: "hint" },
        ` as ${inv.role}, from ${inv.inviter_name}; until ${stamp(inv.expires_ms)}`,
      ),
    );
    item.dataset.invitationId = inv.invitation_id;
    const label = `the invitation to ${inv.sphere_name}`;
    const accept = actionButton("Accept", `Accept ${label}`, async () => {
      const reply = await this.attempt(
        () => this.client.acceptInvitation(inv.invitation_id),
        status,
      );
      if (!reply) return;
      this.close();
      await this.chat.refreshSpheres();
      this.refreshInvitations();
      this.chat.navigate(inv.sphere_id);
    });
    const decline = actionButton(
      "Decline",
      `Decline ${label}`,
      async () => {
        if (await this.attempt(() => this.client.declineInvitation(inv.invitation_id), status)) {
          item.remove();
          this.refreshInvitations();
        }
      },
      "danger-text",
    );
    item.append(accept, decline);
    return item;
  }


  /** Join a sphere read from outside (public), or ask to when it admits on approval. */
  async openJoin(view) {
    const status = alertLine();
    this.show(`Join ${view.name || "this sphere"}`, status);
    try {
      await this.client.join(view.sphereId);
    } catch (error) {
      if (error.code !== "forbidden") {
        status.textContent = explain(error);
        return;
      }
      const note = el("input", { id: "join-note", maxLength: 500 });
      const form = formOf("Ask to join", status, async () => {
        const sent = await this.attempt(
          () => this.client.requestJoin(view.sphereId, note.value.trim()),
          status,
        );
        if (sent) form.replaceChildren(el("p", { role: "status" }, "Request sent."));
      });
      form.prepend(
        el("p", {}, `${error.message}. You may ask its administrators to let you in.`),
        field("Note (optional)", note),
      );
      this.panelBody.append(form);
      return;
    }
    this.close();
    await this.chat.refreshSpheres();
  }

  openInvite(view) {
    const user = el("input", { id: "invite-user", required: true, spellcheck: false });
    const mine = RANK[view.role] ?? 0;
    const roles = ROLES.filter((r) => RANK[r] <= mine && r !== "owner").map((r) => [r, r]);
    const role = select("invite-role", roles, "member");
    const status = alertLine();
    const form = formOf("Invite", status, async () => {
      const reply = await this.attempt(
        () => this.client.invite(view.sphereId, user.value.trim(), role.value),
        status,
      );
      if (!reply) return;
      const inv = reply.invitation;
      user.value = "";
      const until = stamp(inv.expires_ms);
      status.textContent = `Invited ${inv.invitee_name} as ${inv.role}, until ${until}.`;
    });
    form.prepend(field("User id", user), field("Role", role));
    this.show(`Invite to ${view.name}`, form);
  }

  async openSphereInvitations(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Pending invitations", status, list);
    const reply = await this.attempt(() => this.client.listInvitations(view.sphereId), status);
    if (!reply) return;
    const pending = reply.invitations.filter((i) => i.state === "pending");
    if (!pending.length) status.textContent = "No pending invitation.";
    for (const inv of pending) {
      const item = el(
        "li",
        {},
        el("span", { className: "panel-item-name" }, inv.invitee_name),
        el("span", { className: "hint" }, ` as ${inv.role}, by ${inv.inviter_name}`),
        el("span", { className: "hint" }, `; until ${stamp(inv.expires_ms)}`),
      );
      const revoke = async () => {
        const done = await this.attempt(
          () => this.client.revokeInvitation(inv.invitation_id),
          status,
        );
        if (done) item.remove();
      };
      const label = `Revoke the invitation of ${inv.invitee_name}`;
      item.append(actionButton("Revoke", label, revoke, "danger-text"));
      list.append(item);
    }
  }

  async openRequests(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Join requests", status, list);
    const reply = await this.attempt(() => this.client.listRequests(view.sphereId), status);
    if (!reply) return;
    if (!reply.requests.length) status.textContent = "No pending request.";
    for (const request of reply.requests) {
      const item = el(
        "li",
        {},
        el("span", { className: "panel-item-name" }, request.name),
        el("span", { className: "hint" }, request.comment ? `: ${request.comment}` : ""),
      );
      const answer = (accept) => async () => {
        const done = await this.attempt(
          () => this.client.answerRequest(view.sphereId, request.user_id, accept),
          status,
        );
        if (done) item.remove();
      };
      item.append(
        actionButton("Accept", `Accept ${request.name}`, answer(true)),
        actionButton("Refuse", `Refuse ${request.name}`, answer(false), "danger-text"),
      );
      list.append(item);
    }
  }
}
