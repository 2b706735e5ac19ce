/**
 * org-policies.js: the managers' form of an organisation's name and policies: retention and
 * history of new spheres, the sphere types members may create, visitors, member exports, the
 * erasure mode, the directory, e-mail domains for self-registration, and quotas.
 *
 * Only what changed is sent (each change is one entry of the organisation's audit log). The
 * server validates everything; its refusal names the policy (`policies.email_domains: ...`),
 * and the message is shown under that field, which is marked invalid and focused.
 */

import { el } from "./dom.js";
import { alertLine, checkField, explain, field, formOf, select } from "./panel.js";
import { HISTORY } from "./governance-options.js";
import { OrgManager } from "./org-manager.js";

const MEMBER_TYPES = [
  ["private", "Private"],
  ["open", "Open"],
  ["public", "Public"],
  ["restricted", "Restricted"],
];
const QUOTAS = [
  ["members", "Members"],
  ["spheres", "Spheres"],
  ["messages_per_day", "Messages per day"],
  ["storage_bytes", "Storage (bytes of message text)"],
];
const EXPORTS = [
  ["true", "Allowed"],
  ["false", "Not allowed"],
];
const ERASURE = [
  ["erase", "Erase them (they become tombstones)"],
  ["anonymise", "Keep them, without their author"],
];
// Offered only while a policy still follows the server's setting: the protocol has no way
// to hand a policy back to the server once the organisation chose a value.
const SERVER_DEFAULT = ["", "The server's setting"];

/** The policies layer of `Governance`. */
export class OrgPolicyForm extends OrgManager {
  async openPolicies() {
    const org = this.orgs.current;
    if (!org) return;
    const status = alertLine();
    this.showOrg("policies", "policies", status);
    const info = await this.attempt(() => this.client.getOrg(org.org_id), status);
    if (!info || this.orgs.currentId !== org.org_id) return;
    this.orgs.apply(info);
    this.panelBody.append(this.policiesForm(org, info));
    this.panelBody.querySelector("form input")?.focus();
  }

  policiesForm(org, info) {
    let base = info.policies ?? {};
    let baseName = info.org.name;
    const status = alertLine();
    const name = el("input", { id: "org-name-input", required: true, maxLength: 100 });
    name.value = baseName;
    const entries = [
      { key: "name", wrap: field("Name of the organisation", name), control: name },
      ...policyEntries(base),
    ];
    const controls = new Map(); // policy key -> {control, error}
    for (const { key, wrap, control } of entries) {
      const error = el("p", { className: "form-error field-error", id: `error-${key}` });
      control.setAttribute("aria-describedby", error.id);
      controls.set(key, { control, error });
      wrap.append(error);
    }
    const read = () => {
      const wanted = { quotas: {} };
      for (const { key, value } of entries.filter((e) => e.value)) {
        if (key.startsWith("quotas.")) wanted.quotas[key.slice(7)] = value();
        else wanted[key] = value();
      }
      return wanted;
    };
    const form = formOf("Save the policies", status, async () => {
      clearErrors(controls);
      const change = changedPolicies(base, read());
      const renamed = name.value.trim() !== baseName ? name.value.trim() : undefined;
      if (!renamed && !Object.keys(change).length) {
        status.textContent = "Nothing changed.";
        return;
      }
      const update = { name: renamed, policies: Object.keys(change).length ? change : undefined };
      let reply;
      try {
        reply = await this.client.updateOrg(org.org_id, update);
      } catch (error) {
        showError(error, controls, status);
        return;
      }
      if (reply?.policies) {
        this.orgs.apply(reply);
        base = reply.policies;
        baseName = reply.org.name;
      } else {
        base = { ...base, ...change, quotas: { ...base.quotas, ...change.quotas } };
        baseName = renamed ?? baseName;
      }
      status.textContent = "Policies saved.";
    });
    const legend = el("legend", {}, QUOTAS_TITLE);
    const quotas = el("fieldset", { className: "policy-group quotas" }, legend);
    for (const entry of entries) {
      if (entry.key.startsWith("quotas.")) quotas.append(entry.wrap);
      else form.insertBefore(entry.wrap, status);
    }
    form.insertBefore(quotas, status);
    return form;
  }
}

const QUOTAS_TITLE = "Quotas (empty: no limit)";

/**
 * The policy fields, each `{key, wrap, control, value}`: `wrap` is shown, `control` takes the
 * focus and the error, `value()` reads what the form says (as the protocol writes it).
 */
function policyEntries(base) {
  const entries = [];
  const add = (key, label, control, value, kind = field) =>
    entries.push({ key, wrap: kind(label, control), control, value });
  const check = (id, on) => el("input", { id, type: "checkbox", checked: Boolean(on) });

  const retention = number("policy-retention", base.retention_days, 36500);
  add("retention_days", RETENTION_LABEL, retention, () => count(retention.value));
  const history = select("policy-history", HISTORY, base.history ?? "since_joining");
  add("history", "What newcomers to a new sphere may read", history, () => history.value);

  const types = el("fieldset", { className: "policy-group" });
  types.append(el("legend", {}, "Sphere types members may create"));
  const allowed = new Set(base.member_sphere_types ?? ["open", "private"]);
  const boxes = MEMBER_TYPES.map(([value, text]) => {
    const box = check(`policy-type-${value}`, allowed.has(value));
    box.value = value;
    types.append(checkField(text, box));
    return box;
  });
  const chosen = () => boxes.filter((b) => b.checked).map((b) => b.value);
  entries.push({ key: "member_sphere_types", wrap: types, control: boxes[0], value: chosen });

  const visitors = check("policy-visitors", base.visitors);
  add("visitors", VISITORS_LABEL, visitors, () => visitors.checked, checkField);
  const exports = optional("policy-exports", EXPORTS, base.member_exports);
  const exportsValue = () => (exports.value === "" ? null : exports.value === "true");
  add("member_exports", "Members export the spheres they administer", exports, exportsValue);
  const erasure = optional("policy-erasure", ERASURE, base.erasure);
  add("erasure", "When a member's account is deleted, their posts", erasure, () =>
    erasure.value === "" ? null : erasure.value,
  );
  const directory = check("policy-directory", base.directory !== false);
  const directoryLabel = "Members see the directory of members";
  add("directory", directoryLabel, directory, () => directory.checked, checkField);
  const privates = check("policy-export-private", base.export_private_messages);
  const privatesValue = () => privates.checked;
  add("export_private_messages", PRIVATE_EXPORT_LABEL, privates, privatesValue, checkField);
  const domains = el("textarea", { id: "policy-domains", rows: 3 });
  domains.value = (base.email_domains ?? []).join("\n");
  const domainList = () => domains.value.split(/[\s,]+/).filter(Boolean);
  add("email_domains", DOMAINS_LABEL, domains, domainList);

  for (const [key, text] of QUOTAS) {
    const input = number(`policy-quota-${key}`, base.quotas?.[key], 2 ** 53);
    add(`quotas.${key}`, text, input, () => count(input.value));
  }
  return entries;
}

const RETENTION_LABEL = "Days the messages of a new sphere are kept (empty: the server's default)";
const VISITORS_LABEL = "Sphere administrators may invite visitors from outside";
const PRIVATE_EXPORT_LABEL = "The organisation's export includes private messages";
const DOMAINS_LABEL = "E-mail domains whose owners may register themselves (one per line)";

/** A whole-number field; 0 and null (no limit, the default) show empty. */
function number(id, value, max) {
  const input = el("input", { id, type: "number", min: "0", max: String(max), step: "1" });
  input.value = value ? String(value) : "";
  return input;
}

/** A select whose "the server's setting" choice exists only while the policy is unset. */
function optional(id, choices, value) {
  const unset = value === null || value === undefined;
  return select(id, unset ? [SERVER_DEFAULT, ...choices] : choices, unset ? "" : String(value));
}

/** A count typed in a number field: empty is 0 (the protocol's "no limit" or "default"). */
function count(text) {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : Number(trimmed);
}

/** The keys of `wanted` that differ from `base` (quotas: only the changed limits). */
function changedPolicies(base, wanted) {
  const change = {};
  for (const [key, value] of Object.entries(wanted)) {
    if (key === "quotas") {
      const quotas = {};
      for (const [name, limit] of Object.entries(value)) {
        if (limit !== (base.quotas?.[name] ?? 0)) quotas[name] = limit;
      }
      if (Object.keys(quotas).length) change.quotas = quotas;
    } else if (value !== null && !same(value, base[key] ?? DEFAULTS[key])) {
      change[key] = value; // null: still the server's setting (see SERVER_DEFAULT)
    }
  }
  return change;
}

// What an absent policy means, to compare the form with.
const DEFAULTS = {
  retention_days: 0,
  history: "since_joining",
  member_sphere_types: ["open", "private"],
  visitors: false,
  directory: true,
  email_domains: [],
  export_private_messages: false,
};

function same(a, b) {
  if (Array.isArray(a) || Array.isArray(b)) {
    const sorted = (x) => JSON.stringify([...(x ?? [])].sort());
    return sorted(a) === sorted(b);
  }
  return a === b;
}

function clearErrors(controls) {
  for (const { control, error } of controls.values()) {
    error.textContent = "";
    control.removeAttribute("aria-invalid");
  }
}

/**
 * Show a refusal under the field it names ("policies.quotas.members: must be ..." or
 * "email_domains: 'x' is not a domain name"), else in the form's status line.
 */
function showError(error, controls, status) {
  const message = error?.message ?? "";
  const colon = message.indexOf(": ");
  if (error?.code === "bad_frame" && colon > 0) {
    const path = message.slice(0, colon).replace(/^policies\./, "").replace(/\[\d+\]/g, "");
    const key = controls.has(path) ? path : path.split(".")[0];
    const slot = controls.get(key);
    if (slot) {
      slot.error.textContent = message.slice(colon + 2);
      slot.control.setAttribute("aria-invalid", "true");
      slot.control.focus();
      status.textContent = "Not saved: the field marked invalid was refused.";
      return;
    }
  }
  status.textContent = explain(error);
}
