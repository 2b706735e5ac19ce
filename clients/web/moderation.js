/**
 * moderation.js: acting on members (role, removal, mute, ban), the ban list and reports.
 */

import { actionButton, el, stamp } from "./dom.js";
import { isStaff, RANK, ROLES } from "./roles.js";
import { alertLine, explain, field, formOf, select } from "./panel.js";
import { SphereAccess } from "./access.js";

// Mute lengths offered, in minutes (the server accepts a minute to a year).
const MUTE_MINUTES = [
  [10, "10 minutes"],
  [60, "1 hour"],
  [1440, "1 day"],
  [10080, "1 week"],
];

/** The moderation layer of `Governance`. */
export class Moderation extends SphereAccess {
  async openBans(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Banned users", status, list);
    const reply = await this.attempt(() => this.client.listBans(view.sphereId), status);
    if (!reply) return;
    if (!reply.bans.length) status.textContent = "Nobody is banned.";
    for (const ban of reply.bans) {
      const item = el(
        "li",
        {},
        el("span", { className: "panel-item-name" }, ban.name),
        el("span", { className: "hint" }, ` ${stamp(ban.ts_ms)}`),
        el("span", { className: "hint" }, ban.reason ? `: ${ban.reason}` : ""),
      );
      item.append(
        actionButton("Lift the ban", `Lift the ban on ${ban.name}`, async () => {
          if (await this.attempt(() => this.client.unban(view.sphereId, ban.user_id), status)) {
            item.remove();
          }
        }),
      );
      list.append(item);
    }
  }

  async openReports(view) {
    const status = alertLine();
    const list = el("ul", { className: "panel-list" });
    this.show("Reports", status, list);
    const page = await this.attempt(() => this.client.listReports(view.sphereId), status);
    if (!page) return;
    if (!page.reports.length) status.textContent = "No report.";
    for (const r of page.reports) {
      const by = this.chat.displayName(r.reporter_id);
      const comment = el("span", { className: "hint" }, r.comment ? `: ${r.comment}` : "");
      list.append(el("li", {}, `#${r.target} ${r.reason} by ${by}, ${stamp(r.ts_ms)}`, comment));
    }
  }

  /** The moderation controls of one member in the people list, or nothing. */
  memberControls(view, member) {
    const mine = RANK[view.role] ?? 0;
    if (!isStaff(view.role) || member.user_id === this.chat.me?.user_id) return null;
    if ((RANK[member.role] ?? 0) >= mine) return null;
    const name = member.name;
    const controls = el("div", { className: "member-actions" });
    const muted = Boolean(member.mutedUntil && member.mutedUntil > Date.now());
    const lower = ROLES.filter((r) => RANK[r] < mine).map((r) => [r, r]);
    const role = select(`role-${member.user_id}`, lower, member.role);
    role.setAttribute("aria-label", `Role of ${name}`);
    role.addEventListener("change", () =>
      this.memberAct(view, () => this.client.setRole(view.sphereId, member.user_id, role.value)),
    );
    controls.append(
      role,
      actionButton("Remove", `Remove ${name}`, () =>
        this.memberAct(view, () => this.client.removeMember(view.sphereId, member.user_id)),
      ),
      muted
        ? actionButton("Unmute", `Unmute ${name}`, () =>
            this.memberAct(view, () => this.client.unmute(view.sphereId, member.user_id)),
          )
        : actionButton("Mute", `Mute ${name}`, () => this.openMute(view, member)),
      actionButton("Ban", `Ban ${name}`, () => this.openBan(view, member), "danger-text"),
    );
    return controls;
  }

  async memberAct(view, work) {
    try {
      await work();
    } catch (error) {
      this.chat.showPeopleError(explain(error));
    }
  }

  openMute(view, member) {
    const length = select("mute-length", MUTE_MINUTES, "60");
    const status = alertLine();
    const form = formOf("Mute", status, async () => {
      const seconds = Number(length.value) * 60;
      const mute = () => this.client.mute(view.sphereId, member.user_id, seconds);
      const done = await this.attempt(mute, status);
      if (done) this.close();
    });
    form.prepend(
      el("p", {}, `${member.name} can read but not write while muted.`),
      field("For", length),
    );
    this.show(`Mute ${member.name}`, form);
  }

  openBan(view, member) {
    const reason = el("input", { id: "ban-reason", maxLength: 500 });
    const status = alertLine();
    const form = formOf("Ban", status, async () => {
      const done = await this.attempt(
        () => this.client.ban(view.sphereId, member.user_id, reason.value.trim()),
        status,
      );
      if (done) this.close();
    });
    form.querySelector("button[type=submit]").className = "danger";
    form.prepend(
      el(
        "p",
        {},
        `${member.name} is removed and cannot come back, be invited or ask to join ` +
          "until the ban is lifted.",
      ),
      field("Reason (optional, for the audit log)", reason),
    );
    this.show(`Ban ${member.name}?`, form);
  }
}
