/**
 * org-manager.js: the managers' pages of an organisation: its members (role changes, removal
 * after a confirmation, adding a user by id) and its audit log. The policies form is in
 * org-policies.js. The server decides every right: a refusal shows where it happened.
 */

import { actionButton, el, stamp } from "./dom.js";
import { alertLine, field, formOf, row, select } from "./panel.js";
import { OrgPortal } from "./org-portal.js";

const ORG_ROLES = [
  ["member", "member"],
  ["manager", "manager"],
];
// Audit entries per page, and the directory page read to name their actors.
const AUDIT_PAGE = 50;
const NAMES_PAGE = 200;
// Actors of the audit log that are not users.
const NON_USERS = { cli: "the server's operator" };

/** The managers' members and audit layer of `Governance`. */
export class OrgManager extends OrgPortal {
  openOrgMembers() {
    const org = this.orgs.current;
    if (!org) return;
    const acted = alertLine();
    const pages = this.memberPages(org, (member) => this.orgMemberItem(org, member, acted));
    this.showOrg("members", "members", this.addMemberForm(org, pages), acted, ...pages.nodes);
  }

  addMemberForm(org, pages) {
    const user = el("input", { id: "org-add-user", required: true, spellcheck: false });
    const role = select("org-add-role", ORG_ROLES, "member");
    const status = alertLine();
    const form = formOf("Add to the organisation", status, async () => {
      const userId = user.value.trim();
      const wanted = role.value;
      const done = await this.attempt(
        () => this.client.addOrgMember(org.org_id, userId, wanted),
        status,
      );
      if (!done) return;
      user.value = "";
      await pages.reload();
      const name = this.chat.names.get(userId) ?? userId;
      status.textContent = `Added ${name} as ${wanted}.`;
    });
    form.classList.add("inline-form");
    form.prepend(field("User id", user), field("Role", role));
    return el("section", { className: "org-add" }, el("h3", {}, "Add a member"), form);
  }

  orgMemberItem(org, member, acted) {
    const name = member.name;
    const item = el("li", {}, el("span", { className: "panel-item-name" }, name));
    item.dataset.userId = member.user_id;
    if (member.user_id === this.chat.me?.user_id) {
      item.append(el("span", { className: "person-role" }, `${member.role}, you`));
      return item;
    }
    const role = select(`org-role-${member.user_id}`, ORG_ROLES, member.role);
    role.setAttribute("aria-label", `Organisation role of ${name}`);
    role.addEventListener("change", async () => {
      const wanted = role.value;
      const done = await this.attempt(
        () => this.client.setOrgRole(org.org_id, member.user_id, wanted),
        acted,
      );
      if (done) {
        member.role = wanted;
        acted.textContent = `${name} is now ${wanted === "manager" ? "a manager" : "a member"}.`;
      } else {
        role.value = member.role; // refused: show the role they still have
      }
    });
    const remove = actionButton(
      "Remove",
      `Remove ${name} from the organisation`,
      () => this.confirmRemoveOrgMember(org, member),
      "danger-text",
    );
    item.append(role, remove);
    return item;
  }

  confirmRemoveOrgMember(org, member) {
    const status = alertLine();
    const form = formOf("Remove from the organisation", status, async () => {
      const done = await this.attempt(
        () => this.client.removeOrgMember(org.org_id, member.user_id),
        status,
      );
      if (done) this.openOrgMembers();
    });
    form.querySelector("button[type=submit]").className = "danger";
    form.querySelector(".dialog-actions").prepend(
      actionButton("Cancel", "", () => this.openOrgMembers()),
    );
    form.prepend(
      el(
        "p",
        {},
        `${member.name} leaves every sphere of ${org.name} and no longer sees the ` +
          "organisation. Their account stays.",
      ),
    );
    this.show(`Remove ${member.name}?`, form);
  }

  // -- the audit log -----------------------------------------------------------------------

  async openOrgAudit() {
    const org = this.orgs.current;
    if (!org) return;
    const status = alertLine();
    const body = el("tbody");
    const table = el(
      "table",
      { className: "audit" },
      el("caption", { className: "visually-hidden" }, "Organisation audit log, newest first"),
      el("thead", {}, row("th", "When", "Who", "Action", "To whom", "Detail")),
      body,
    );
    const more = actionButton("Older entries", "", () => load());
    more.hidden = true;
    this.showOrg("audit", "audit log", status, table, more);
    let before;
    let named = false;
    const load = async () => {
      const read = () => this.client.listOrgAudit(org.org_id, { before, limit: AUDIT_PAGE });
      const page = await this.attempt(read, status);
      if (!page) return;
      if (!named) named = await this.learnNames(org, page.entries);
      for (const e of page.entries) {
        const who = NON_USERS[e.actor_id] ?? this.chat.displayName(e.actor_id);
        const target = e.target_id ? this.chat.displayName(e.target_id) : "";
        const action = e.action.replaceAll("_", " ");
        body.append(row("td", stamp(e.ts_ms), who, action, target, e.detail ?? ""));
      }
      if (!body.childElementCount) status.textContent = "Nothing recorded yet.";
      before = page.entries.at(-1)?.seq;
      more.hidden = !page.has_more;
    };
    await load();
  }

  /** Name the people of audit entries the page does not know yet, from a directory page. */
  async learnNames(org, entries) {
    const ids = entries.flatMap((e) => [e.actor_id, e.target_id]);
    if (ids.every((id) => !id || this.chat.names.has(id) || id in NON_USERS)) return false;
    try {
      const page = await this.client.listOrgMembers(org.org_id, { limit: NAMES_PAGE });
      for (const m of page.members) this.chat.names.set(m.user_id, m.name);
    } catch {
      // The log is still shown, with short ids for whom it cannot name.
    }
    return true;
  }
}
