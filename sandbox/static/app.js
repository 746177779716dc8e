/* o2c-bot sandbox page: renders the local Slack stand-in and acts like a Slack client.
 *
 * Everything the user does goes to the sandbox JSON API (api/...), which sends the bot the
 * same signed requests Slack would. State comes from api/state by long-poll.
 * Safety: text from the bot is turned into DOM nodes (createElement / text nodes), never parsed
 * as HTML, so nothing user-supplied can become markup; links are http(s)/mailto only. */
"use strict";

const $ = (sel) => document.querySelector(sel);
const S = {state: null, version: -1, me: localStorage.getItem("o2c.me"), conv: null,
           seen: {}, drafts: {}, modalKey: "", listKey: "", jobs: null};

// ---------------------------------------------------------------- server calls
async function call(path, body) {
  const init = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                          headers: {"Content-Type": "application/json"}};
  const res = await fetch("api/" + path, init);
  const data = await res.json().catch(() => ({}));
  if (!res.ok || data.ok === false) {
    const detail = data.error || data.detail || res.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}
const act = (path, body) => call(path, {user: S.me, ...body}).catch((e) => { toast(e.message); throw e; });

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 7000);
}

// ---------------------------------------------------------------- DOM helpers
function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid !== null && kid !== undefined && kid !== false) node.append(kid);  // strings become text nodes
  }
  return node;
}
const safeUrl = (u) => (typeof u === "string" && /^(https?:|mailto:)/i.test(u) ? u : null);
const safeImg = (u) => (typeof u === "string" && /^(https?:|data:image\/)/i.test(u) ? u : null);

// ---------------------------------------------------------------- text and mrkdwn
const EMOJI = {white_check_mark: "✅", heavy_check_mark: "✔️", warning: "⚠️", x: "❌", no_entry: "⛔",
  hourglass_flowing_sand: "⏳", hourglass: "⌛", pencil2: "✏️", package: "📦", truck: "🚚",
  receipt: "🧾", moneybag: "💰", lock: "🔒", double_vertical_bar: "⏸️", information_source: "ℹ️",
  new: "🆕", octagonal_sign: "🛑", rotating_light: "🚨", bell: "🔔", calendar: "📅",
  telephone_receiver: "📞", email: "📧", envelope: "✉️", chart_with_upwards_trend: "📈",
  bar_chart: "📊", wave: "👋", tada: "🎉", money_with_wings: "💸", handshake: "🤝", zzz: "💤",
  red_circle: "🔴", large_yellow_circle: "🟡", large_green_circle: "🟢", mag: "🔍", memo: "📝",
  sunrise: "🌅", clock9: "🕘", fire: "🔥", bust_in_silhouette: "👤", link: "🔗", eyes: "👀",
  credit_card: "💳", leftwards_arrow_with_hook: "↩️",
  // every other shortcode the product uses (tests/sandbox/test_emoji.py walks them all)
  alarm_clock: "⏰", arrow_right: "➡️", broken_heart: "💔", bulb: "💡", grey_question: "❔",
  heavy_minus_sign: "➖", label: "🏷️", no_entry_sign: "🚫", one: "1️⃣", two: "2️⃣",
  outbox_tray: "📤", repeat: "🔁", scales: "⚖️", wastebasket: "🗑️", page_facing_up: "📄"};
const emojify = (s) => s.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
const unescapeSlack = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const userName = (id) => (id === S.state?.bot.id ? "o2c-bot"
  : S.state?.users.find((u) => u.id === id)?.real_name || id);
const channelName = (id) => S.state?.channels.find((c) => c.id === id)?.name || id;

function plainText(obj) {
  if (!obj) return "";
  return obj.emoji === false ? obj.text : emojify(obj.text || "");
}
function text(obj) {
  if (!obj) return "";
  return obj.type === "mrkdwn" ? mrkdwn(obj.text || "") : document.createTextNode(plainText(obj));
}

// Slack control sequences: <@U1>, <#C1|name>, <!here>, <url|label>.
function controlNode(inner) {
  const bar = inner.indexOf("|");
  const target = bar < 0 ? inner : inner.slice(0, bar);
  const label = bar < 0 ? "" : unescapeSlack(inner.slice(bar + 1));
  if (target.startsWith("@")) return el("span", {class: "mention"}, "@" + userName(target.slice(1)));
  if (target.startsWith("#")) return el("span", {class: "mention"}, "#" + (label || channelName(target.slice(1))));
  if (target.startsWith("!")) {
    const special = target.slice(1).split("^")[0];
    const shown = ["here", "channel", "everyone"].includes(special) ? "@" + special : label || special;
    return el("span", {class: "mention"}, shown);
  }
  const href = safeUrl(unescapeSlack(target));
  const a = el("a", href ? {href, target: "_blank", rel: "noopener noreferrer"} : {},
               label || unescapeSlack(target));
  return a;
}

function textWithControls(parent, s, controls) {
  s.split(/\uE000(\d+)\uE001/).forEach((part, i) => {
    if (i % 2) parent.append(controlNode(controls[Number(part)]));
    else if (part) parent.append(emojify(unescapeSlack(part)));
  });
}

const INLINE = /```([\s\S]+?)```|`([^`\n]+)`|(?<![\w*])\*(?!\s)([^*\n]+?)\*(?![\w*])|(?<![\w_])_(?!\s)([^_\n]+?)_(?![\w_])|(?<![\w~])~(?!\s)([^~\n]+?)~(?![\w~])/;

function inline(parent, s, controls) {
  let m;
  while ((m = INLINE.exec(s))) {
    textWithControls(parent, s.slice(0, m.index), controls);
    if (m[1] !== undefined || m[2] !== undefined) {
      const node = el(m[1] !== undefined ? "pre" : "code");
      textWithControls(node, m[1] ?? m[2], controls);
      parent.append(node);
    } else {
      const node = el(m[3] !== undefined ? "b" : m[4] !== undefined ? "i" : "s");
      inline(node, m[3] ?? m[4] ?? m[5], controls);
      parent.append(node);
    }
    s = s.slice(m.index + m[0].length);
  }
  textWithControls(parent, s, controls);
}

function mrkdwn(source) {
  const controls = [];
  const marked = String(source).replace(/[\uE000\uE001]/g, "")
    .replace(/<([^<>\n]+)>/g, (_, inner) => `\uE000${controls.push(inner) - 1}\uE001`);
  const span = el("span", {class: "mrkdwn"});
  // lines starting with ">" (or "&gt;", as Slack escapes it) are a quote, as in Slack
  const QUOTE = /^(?:>|&gt;) ?/;
  const segments = [];  // runs of plain lines and of quoted lines, in order
  for (const line of marked.split("\n")) {
    const quoted = QUOTE.test(line);
    const last = segments[segments.length - 1];
    const textLine = quoted ? line.replace(QUOTE, "") : line;
    if (last && last.quoted === quoted) last.lines.push(textLine);
    else segments.push({quoted, lines: [textLine]});
  }
  segments.forEach((seg, i) => {
    const body = seg.lines.join("\n");
    if (seg.quoted) {
      const quote = el("blockquote", {class: "bk-quote"});
      inline(quote, body, controls);
      span.append(quote);
    } else {
      inline(span, body + (i < segments.length - 1 && !segments[i + 1].quoted ? "\n" : ""), controls);
    }
  });
  return span;
}

// ---------------------------------------------------------------- element values
// A value is what the server's driver expects: a string for text/number/select/date, an
// option object for external selects, arrays for multi-selects and checkboxes.
const EMPTY = (v) => v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length);
function initialOf(e) {
  const ext = e.type.includes("external");
  if (e.initial_option) return ext ? e.initial_option : e.initial_option.value;
  if (e.initial_options) return e.initial_options.map((o) => (ext ? o : o.value));
  return e.initial_value ?? e.initial_user ?? e.initial_users ?? e.initial_conversation
    ?? e.initial_conversations ?? e.initial_channel ?? e.initial_channels ?? e.initial_date
    ?? e.initial_time ?? null;
}
function fromState(entry, e) {
  const ext = e.type.includes("external");
  if ("selected_option" in entry) return entry.selected_option && (ext ? entry.selected_option : entry.selected_option.value);
  if ("selected_options" in entry) return entry.selected_options.map((o) => (ext ? o : o.value));
  for (const k of ["value", "selected_user", "selected_users", "selected_conversation", "selected_conversations",
    "selected_channel", "selected_channels", "selected_date", "selected_time"]) if (k in entry) return entry[k];
  return null;
}
function currentValue(view, blockId, e) {
  const draft = S.drafts[view.id]?.[blockId]?.[e.action_id];
  if (draft !== undefined) return draft;
  const entry = view.state?.values?.[blockId]?.[e.action_id];
  return entry ? fromState(entry, e) : initialOf(e);
}
function setDraft(viewId, blockId, actionId, value) {
  ((S.drafts[viewId] ||= {})[blockId] ||= {})[actionId] = value;
}
function formValues(view) {
  const values = {};
  for (const b of view.blocks) {
    if (b.type === "input" && b.element) {
      (values[b.block_id] ||= {})[b.element.action_id] = currentValue(view, b.block_id, b.element);
    }
  }
  return values;
}

// ---------------------------------------------------------------- interactive elements
const optionsOf = (e) => [...(e.options || []), ...(e.option_groups || []).flatMap((g) => g.options)];
function optionNodes(e) {
  const opt = (o) => el("option", {value: o.value}, plainText(o.text));
  if (e.option_groups) return e.option_groups.map((g) => el("optgroup", {label: plainText(g.label)}, g.options.map(opt)));
  return (e.options || []).map(opt);
}
function selectNode(id, e, choices, current, onValue) {
  const multi = e.type.startsWith("multi_");
  const select = el("select", {id, class: "in", multiple: multi},
    multi ? null : el("option", {value: ""}, plainText(e.placeholder) || "Select…"), choices);
  const chosen = multi ? current || [] : [current];
  for (const o of select.options) o.selected = chosen.includes(o.value) && o.value !== "";
  select.addEventListener("change", () => onValue(multi ? [...select.selectedOptions].map((o) => o.value)
    : select.value || null));
  return select;
}
function externalSelect(id, e, ctx, block, current, onValue) {
  const multi = e.type === "multi_external_select";
  const box = el("div", {class: "combo"});
  const input = el("input", {id, class: "in", placeholder: plainText(e.placeholder) || "Type to search…",
    role: "combobox", "aria-autocomplete": "list"});
  input.value = current && !multi ? plainText(current.text) : "";
  const list = el("ul", {class: "combo-list", role: "listbox", hidden: true});
  const minLength = e.min_query_length ?? 3;
  // multi_external_select: the chosen options as chips (× removes one), the box searches more
  let chosen = multi ? [...(current || [])] : [];
  const chips = el("div", {class: "chips"});
  const drawChips = () => chips.replaceChildren(...chosen.map((o) => el("span", {class: "chip"},
    plainText(o.text), el("button", {type: "button", class: "x", "aria-label": "Remove " + plainText(o.text),
      onclick: () => { chosen = chosen.filter((c) => c.value !== o.value); drawChips(); onValue(chosen.length ? chosen : null); }}, "×"))));
  if (multi) drawChips();
  const pick = (o) => {
    if (!multi) { input.value = plainText(o.text); onValue(o); return; }
    if (!chosen.some((c) => c.value === o.value)) chosen = [...chosen, o];
    input.value = "";
    drawChips();
    onValue(chosen);
  };
  const show = (opts) => {
    list.replaceChildren(...opts.map((o) => el("li", {role: "option", tabindex: "-1", onmousedown: (ev) => {
      ev.preventDefault(); list.hidden = true; pick(o);
    }}, plainText(o.text))));
    if (!opts.length) list.append(el("li", {class: "combo-empty"}, "No matches"));
    list.hidden = false;
  };
  input.addEventListener("input", () => {
    clearTimeout(input.timer);
    if (input.value.length < minLength) { list.hidden = true; return; }
    input.timer = setTimeout(async () => {
      const res = await act("suggest", {surface: ctx.surface, action_id: e.action_id,
        block_id: block.block_id, value: input.value}).catch(() => null);
      if (res) show([...res.options, ...res.option_groups.flatMap((g) => g.options)]);
    }, 250);
  });
  input.addEventListener("blur", () => setTimeout(() => { list.hidden = true; }, 150));
  box.append(...(multi ? [chips] : []), input, list);
  return box;
}
function control(id, e, ctx, block, current, onValue) {
  const ph = plainText(e.placeholder);
  const users = () => S.state.users.map((u) => el("option", {value: u.id}, u.real_name));
  const channels = () => S.state.channels.map((c) => el("option", {value: c.id}, "#" + c.name));
  switch (e.type) {
    case "plain_text_input": case "number_input": case "email_text_input": case "url_text_input": {
      const type = {number_input: "number", email_text_input: "email", url_text_input: "url"}[e.type] || "text";
      const input = el(e.multiline ? "textarea" : "input", {id, class: "in", placeholder: ph,
        type: e.multiline ? null : type, step: e.type === "number_input" ? (e.is_decimal_allowed ? "any" : "1") : null,
        min: e.min_value, max: e.max_value, maxlength: e.max_length});
      input.value = current ?? "";
      input.addEventListener("input", () => onValue(input.value === "" ? null : input.value, false));
      input.addEventListener("change", () => onValue(input.value === "" ? null : input.value, true));
      return input;
    }
    case "static_select": case "multi_static_select": return selectNode(id, e, optionNodes(e), current, onValue);
    case "users_select": case "multi_users_select": return selectNode(id, e, users(), current, onValue);
    case "conversations_select": case "channels_select": case "multi_conversations_select":
    case "multi_channels_select": return selectNode(id, e, channels(), current, onValue);
    case "external_select": case "multi_external_select":
      return externalSelect(id, e, ctx, block, current, onValue);
    case "datepicker": case "timepicker": {
      const input = el("input", {id, class: "in", type: e.type === "datepicker" ? "date" : "time"});
      input.value = current || "";
      input.addEventListener("change", () => onValue(input.value || null));
      return input;
    }
    case "checkboxes": case "radio_buttons": {
      const radio = e.type === "radio_buttons";
      const chosen = radio ? [current] : current || [];
      const group = el("div", {id, class: "choices", role: radio ? "radiogroup" : "group"});
      for (const o of optionsOf(e)) {
        const box = el("input", {type: radio ? "radio" : "checkbox", name: id, value: o.value});
        box.checked = chosen.includes(o.value);
        box.addEventListener("change", () => onValue(radio ? box.value
          : [...group.querySelectorAll("input:checked")].map((x) => x.value)));
        group.append(el("label", {}, box, " ", text(o.text)));
      }
      return group;
    }
    default: return el("span", {class: "bk-unsupported"}, `[${e.type} not shown in the sandbox]`);
  }
}
function element(e, block, ctx) {
  const fire = (extra) => act("click", {surface: ctx.surface, action_id: e.action_id, block_id: block.block_id,
    values: ctx.view && ctx.view.type === "modal" ? formValues(ctx.view) : {}, ...extra}).catch(() => {});
  if (e.type === "image") return image(e, "bk-accessory-img");
  if (e.type === "button") {
    return el("button", {type: "button", class: `btn ${e.style || ""}`, onclick: () => {
      if (e.confirm && !window.confirm(`${plainText(e.confirm.title)}\n\n${e.confirm.text.text}`)) return;
      if (safeUrl(e.url)) window.open(e.url, "_blank", "noopener");
      fire({});
    }}, plainText(e.text));
  }
  if (e.type === "overflow") {
    const select = el("select", {class: "in overflow", "aria-label": "More actions"},
      el("option", {value: ""}, "⋯"), optionNodes(e));
    select.addEventListener("change", () => select.value && fire({selected: select.value}));
    return select;
  }
  const id = `el-${block.block_id}-${e.action_id}`;
  const current = ctx.view ? currentValue(ctx.view, block.block_id, e) : initialOf(e);
  return control(id, e, ctx, block, current, (value, committed = true) => {
    if (ctx.view) setDraft(ctx.view.id, block.block_id, e.action_id, value);
    if (committed && !EMPTY(value)) fire({selected: value});
  });
}
function inputBlock(b, ctx) {
  const e = b.element;
  const id = `el-${b.block_id}-${e.action_id}`;
  const view = ctx.view;
  const onValue = (value, committed = true) => {
    setDraft(view.id, b.block_id, e.action_id, value);
    // as Slack's client does: a field's error goes away once the person changes the field
    const field = document.querySelector(`.bk-input[data-block="${CSS.escape(b.block_id)}"]`);
    if (field) { field.classList.remove("has-error"); field.querySelector(".bk-error")?.remove(); }
    if (ctx.missing) delete ctx.missing[b.block_id];
    if (b.dispatch_action && committed && !EMPTY(value)) {
      act("click", {surface: ctx.surface, action_id: e.action_id, block_id: b.block_id,
        selected: value, values: formValues(view)}).catch(() => {});
    }
  };
  const error = (view.errors || {})[b.block_id] || ctx.missing?.[b.block_id];
  return el("div", {class: "bk-input" + (error ? " has-error" : ""), "data-block": b.block_id},
    el("label", {for: id, class: "bk-label"}, plainText(b.label), b.optional ? el("span", {class: "optional"}, " (optional)") : null),
    control(id, e, ctx, b, currentValue(view, b.block_id, e), onValue),
    b.hint ? el("div", {class: "bk-hint"}, plainText(b.hint)) : null,
    error ? el("div", {class: "bk-error", role: "alert"}, error) : null);
}

// ---------------------------------------------------------------- blocks
function image(e, cls = "") {
  const src = safeImg(e.image_url);
  return src ? el("img", {class: cls, src, alt: e.alt_text || ""}) : el("span", {class: "bk-unsupported"}, `[image: ${e.alt_text || ""}]`);
}
function block(b, ctx) {
  switch (b.type) {
    case "header": return el("div", {class: "bk-header"}, plainText(b.text));
    case "section": {
      const body = el("div", {class: "bk-section-body"}, b.text ? el("div", {class: "bk-text"}, text(b.text)) : null,
        b.fields ? el("div", {class: "bk-fields"}, b.fields.map((f) => el("div", {class: "bk-field"}, text(f)))) : null);
      return el("div", {class: "bk-section"}, body,
        b.accessory ? el("div", {class: "bk-accessory"}, element(b.accessory, b, ctx)) : null);
    }
    case "context": return el("div", {class: "bk-context"},
      b.elements.map((x) => (x.type === "image" ? image(x, "bk-context-img") : el("span", {}, text(x)))));
    case "divider": return el("hr", {class: "bk-divider"});
    case "image": return el("figure", {class: "bk-image"}, b.title ? el("figcaption", {}, plainText(b.title)) : null, image(b));
    case "actions": return el("div", {class: "bk-actions"}, b.elements.map((x) => element(x, b, ctx)));
    case "input": return ctx.view ? inputBlock(b, ctx) : null;
    default: return el("div", {class: "bk-unsupported"}, `[${b.type} block not shown in the sandbox]`);
  }
}
const blocks = (list, ctx) => el("div", {class: "blocks"}, (list || []).map((b) => block(b, ctx)));

// ---------------------------------------------------------------- messages
const timeOf = (ts) => new Date(Number(ts.split(".")[0]) * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
function message(m) {
  const bot = m.user === S.state.bot.id;
  const surface = m.is_ephemeral ? {kind: "ephemeral", ts: m.ts} : {kind: "message", channel: m.channel, ts: m.ts};
  const name = userName(m.user);
  const body = m.blocks?.length ? blocks(m.blocks, {surface}) : el("div", {class: "bk-text"}, mrkdwn(m.text || ""));
  const attachments = (m.attachments || []).map((a) => el("div", {class: "attachment"},
    a.blocks ? blocks(a.blocks, {surface}) : mrkdwn(a.text || a.fallback || "")));
  return el("article", {class: "msg" + (m.is_ephemeral ? " ephemeral" : "") + (m.thread_ts && m.thread_ts !== m.ts ? " reply" : ""),
    "data-ts": m.ts},
    el("div", {class: "avatar" + (bot ? " bot" : "")}, bot ? "O2C" : name.split(/\s+/).map((w) => w[0]).join("").slice(0, 2)),
    el("div", {class: "msg-main"},
      el("div", {class: "msg-meta"}, el("b", {}, name), bot ? el("span", {class: "tag"}, "APP") : null,
        el("time", {}, timeOf(m.ts)), m.edited ? el("span", {class: "edited"}, "(edited)") : null,
        m.is_ephemeral ? el("span", {class: "only-you"}, "Only visible to you") : null),
      body, attachments,
      m.reactions?.length ? el("div", {class: "reactions"}, m.reactions.map((r) => el("span", {class: "reaction"}, `${emojify(`:${r.name}:`)} ${r.count}`))) : null));
}
function visibleMessages(conv) {
  const all = [...(S.state.messages[conv] || []),
    ...S.state.ephemerals.filter((e) => e.recipient === S.me && e.channel === conv)];
  const top = all.filter((m) => !m.thread_ts || m.thread_ts === m.ts).sort((a, b) => (a.ts < b.ts ? -1 : 1));
  return top.flatMap((m) => [m, ...all.filter((r) => r.thread_ts === m.ts && r.ts !== m.ts).sort((a, b) => (a.ts < b.ts ? -1 : 1))]);
}

// ---------------------------------------------------------------- layout
const me = () => S.state.users.find((u) => u.id === S.me);
const dm = () => "D" + S.me;
function convTitle(conv) {
  if (conv === "home") return ["o2c-bot", "App Home"];
  if (conv === dm()) return ["o2c-bot", "Direct message with the bot"];
  return ["#" + channelName(conv), ""];
}
function renderSidebar() {
  const select = $("#me");
  const key = JSON.stringify(S.state.users);
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    select.replaceChildren(...S.state.users.map((u) => el("option", {value: u.id},
      `${u.real_name}${u.roles.length ? " — " + u.roles.join(", ") : ""}`)));
  }
  select.value = S.me;
  $("#my-roles").textContent = me()?.roles.length ? "Roles: " + me().roles.join(", ") : "No roles yet";
  // The links are made again only when the conversations change; otherwise each is updated in
  // place. (Made again on every state update, a click in flight on one had to start over — a
  // browser test waits for the link it aims at to stay put — while messages kept arriving.)
  const convs = [["home", "o2c-bot — Home"], ...S.state.channels.map((c) => [c.id, "# " + c.name]),
    [dm(), "o2c-bot"]];
  const nav = $("#nav");
  const navKey = JSON.stringify(convs);
  if (nav.dataset.key !== navKey) {
    nav.dataset.key = navKey;
    const link = ([conv, label]) => el("a", {href: "#", class: "nav-item", "data-conv": conv,
      "aria-label": label, onclick: (ev) => { ev.preventDefault(); openConv(conv); }}, label);
    nav.replaceChildren(
      el("div", {class: "nav-title"}, "Apps"), link(convs[0]),
      el("div", {class: "nav-title"}, "Channels"), ...convs.slice(1, -1).map(link),
      el("div", {class: "nav-title"}, "Direct messages"), link(convs[convs.length - 1]));
  }
  for (const a of nav.querySelectorAll("a.nav-item")) {
    const conv = a.dataset.conv;
    const count = conv === "home" ? 0 : visibleMessages(conv).length;
    const unread = conv !== S.conv && count > (S.seen[S.me + conv] || 0);
    a.className = `nav-item${conv === S.conv ? " active" : ""}${unread ? " unread" : ""}`;
    if (conv === S.conv) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
    const badge = unread ? String(count - (S.seen[S.me + conv] || 0)) : null;
    const shown = a.querySelector(".badge");
    if (shown && badge === null) shown.remove();
    else if (shown) shown.textContent = badge;
    else if (badge !== null) a.append(el("span", {class: "badge"}, badge));
  }
  const admin = me()?.roles.includes("admin");
  $("#time-travel").hidden = !admin;
  if (admin && !S.jobs) loadJobs().catch((e) => toast(e.message));
}
function renderMain() {
  const [title, sub] = convTitle(S.conv);
  $("#conv-title").textContent = title;
  $("#conv-sub").textContent = sub;
  $("#composer-form").hidden = S.conv === "home";
  $("#composer").placeholder = S.conv === dm() ? "Message o2c-bot" : `Message ${title}`;
  const box = $("#messages");
  if (S.conv === "home") {
    const view = S.state.homes[S.me];
    const key = "home" + S.me + JSON.stringify(view || null);
    if (key === S.listKey) return;
    S.listKey = key;
    box.replaceChildren(el("div", {class: "home"}, view
      ? blocks(view.blocks, {surface: {kind: "view", view_id: view.id}, view})
      : el("p", {class: "empty"}, "Opening App Home…")));
    return;
  }
  const list = visibleMessages(S.conv);
  S.seen[S.me + S.conv] = list.length;
  const key = S.me + S.conv + JSON.stringify(list);
  if (key === S.listKey) return;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80 || !S.listKey.startsWith(S.me + S.conv);
  S.listKey = key;
  box.replaceChildren(...(list.length ? list.map(message) : [el("p", {class: "empty"}, "No messages yet.")]));
  if (atBottom) box.scrollTop = box.scrollHeight;
}
function renderModal() {
  const root = $("#modal-root");
  const stack = S.state.modals[S.me] || [];
  const view = stack[stack.length - 1];
  const key = view ? S.me + view.id + view.hash + JSON.stringify(view.errors) + JSON.stringify(S.missing || {}) : "";
  if (key === S.modalKey) return;
  S.modalKey = key;
  if (view?.id !== S.modalView) { S.modalView = view?.id; S.missing = {}; }
  if (!view) { root.hidden = true; root.replaceChildren(); return; }
  const ctx = {surface: {kind: "view", view_id: view.id}, view, missing: S.missing};
  const close = () => act("close", {view_id: view.id}).catch(() => {});
  const submit = async (ev) => {
    ev.preventDefault();
    const values = formValues(view);
    S.missing = {};
    for (const b of view.blocks) {
      if (b.type === "input" && !b.optional && EMPTY(values[b.block_id]?.[b.element.action_id])) {
        S.missing[b.block_id] = "Please complete this required field.";
      }
    }
    renderModal();  // show (or clear) "required" errors at once, as Slack's client does
    if (Object.keys(S.missing).length) return;
    await act("submit", {view_id: view.id, values}).catch(() => {});
  };
  root.replaceChildren(el("form", {class: "modal", role: "dialog", "aria-modal": "true", "aria-label": plainText(view.title), onsubmit: submit},
    el("header", {}, el("h2", {}, plainText(view.title)), el("button", {type: "button", class: "x", "aria-label": "Close", onclick: close}, "×")),
    el("div", {class: "modal-body"}, blocks(view.blocks, ctx)),
    el("footer", {}, el("button", {type: "button", class: "btn", onclick: close}, plainText(view.close) || "Cancel"),
      view.submit ? el("button", {type: "submit", class: "btn primary"}, plainText(view.submit)) : null)));
  root.hidden = false;
}
function render() {
  if (!S.state) return;
  if (!S.state.users.some((u) => u.id === S.me)) S.me = (S.state.users.find((u) => u.roles.includes("sales")) || S.state.users[0] || {}).id;
  if (!S.conv || (S.conv.startsWith("D") && S.conv !== dm())) S.conv = S.state.channels.find((c) => c.name === "approvals")?.id || dm();
  renderSidebar();
  renderMain();
  renderModal();
}
function openConv(conv) {
  S.conv = conv;
  render();
  if (conv === "home") act("home", {}).catch(() => {});
  $("#composer").focus();
}

// ---------------------------------------------------------------- time travel
function showClock(clock) {
  const line = $("#tt-clock");
  line.hidden = !clock || !clock.travelled;
  $("#tt-reset").hidden = line.hidden;
  if (clock && clock.travelled) line.textContent = `The bot's clock says ${clock.now} (travelled).`;
}
async function backToNow() {
  try {
    showClock((await act("time-travel/reset", {})).clock);
    $("#tt-result").hidden = true;
  } catch (e) {
    $("#tt-result").hidden = false;
    $("#tt-result").textContent = e.message;
  }
}
async function loadJobs() {
  const answer = await call("jobs");
  S.jobs = answer.jobs;
  showClock(answer.clock);
  const select = $("#tt-job");
  select.replaceChildren(...(S.jobs.length ? S.jobs.map((j) => el("option", {value: j.name, title: j.summary}, j.name))
    : [el("option", {value: ""}, "no scheduled jobs registered")]));
  $("#tt-run").disabled = !S.jobs.length;
}
async function runJob() {
  const out = $("#tt-result");
  out.hidden = false;
  out.textContent = "Running…";
  try {
    const res = await act("time-travel", {job: $("#tt-job").value, as_of: $("#tt-date").value,
                                          at: $("#tt-time").value || "09:00"});
    showClock(res.clock);
    out.textContent = `${res.job} as of ${res.as_of}: done\n${JSON.stringify(res.summary, null, 1)}`;
  } catch (e) {
    out.textContent = e.message;
  }
}

// ---------------------------------------------------------------- start
async function forgetModals() {
  // a reloaded Slack client shows no modal: the ones left open are closed (no view_closed)
  await call("page-loaded", {}).catch(() => {});
}
async function poll() {
  for (;;) {
    try {
      const state = await call(`state?since=${S.version}`);
      S.state = state;
      S.version = state.version;
      render();
    } catch (e) {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
$("#me").addEventListener("change", (ev) => {
  S.me = ev.target.value;
  localStorage.setItem("o2c.me", S.me);
  S.modalKey = S.listKey = "";
  S.missing = {};
  if (S.conv?.startsWith("D")) S.conv = dm();
  render();
  if (S.conv === "home") act("home", {}).catch(() => {});
});
$("#composer-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("#composer");
  const textValue = input.value.trim();
  if (!textValue) return;
  try {
    await act(textValue.startsWith("/") ? "slash" : "message", {channel: S.conv, text: textValue});
    input.value = "";
  } catch (e) { /* shown as a toast */ }
});
$("#tt-run").addEventListener("click", runJob);
$("#tt-reset").addEventListener("click", backToNow);
$("#tt-date").value = new Date().toISOString().slice(0, 10);
window.o2cSandbox = {mrkdwn};  // for tests of the renderer
forgetModals().then(poll);
