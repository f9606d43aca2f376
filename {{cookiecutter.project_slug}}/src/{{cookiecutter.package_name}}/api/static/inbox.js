// Dev inbox: polls the message list (304 while unchanged) and shows the message named in the URL hash.
"use strict";

const API = "inbox/messages";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

let etag = null;
let known = null; // ids listed so far; null until the first listing
const unread = new Set(); // ids that arrived while the page was open and were not opened yet
let shown = null; // id of the message in the view

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function messageUrl(id, suffix = "") {
  return `${API}/${encodeURIComponent(id)}${suffix}`;
}

function formatTime(iso) {
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

function formatSize(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KB`;
}

function setStatus(live, text) {
  const status = $("status");
  status.className = `status ${live ? "live" : "down"}`;
  status.textContent = text;
}

function renderList(inbox) {
  const ids = inbox.messages.map((message) => message.id);
  if (known !== null) for (const id of ids) if (!known.has(id) && id !== shown) unread.add(id);
  known = new Set([...(known || []), ...ids]);
  $("messages").replaceChildren(
    ...inbox.messages.map((message) => {
      const link = element("a");
      link.href = `#${message.id}`;
      link.dataset.id = message.id;
      if (message.id === shown) link.setAttribute("aria-current", "true");
      const top = element("div", "row-top");
      top.append(
        element("span", "row-from", message.from || "(no sender)"),
        element("time", "row-time", formatTime(message.received)),
      );
      link.append(
        top,
        element("div", "row-subject", message.subject || "(no subject)"),
        element("div", "row-to", `to ${message.to}`),
      );
      const item = element("li", unread.has(message.id) ? "new" : "");
      item.append(link);
      return item;
    }),
  );
  $("list-empty").hidden = inbox.messages.length > 0;
  $("count").textContent = String(inbox.total);
  document.title = inbox.total ? `(${inbox.total}) Dev inbox` : "Dev inbox";
  if (shown === null && !location.hash) {
    if (ids.length) location.hash = ids[0];
    else showPlaceholder("Nothing to show yet", "The newest message opens here when it arrives.");
  }
}

async function poll() {
  try {
    const response = await fetch(API, { cache: "no-store", headers: etag ? { "If-None-Match": etag } : {} });
    if (response.status === 200) {
      etag = response.headers.get("ETag");
      renderList(await response.json());
    }
    setStatus(response.ok || response.status === 304, "auto-refreshing");
  } catch {
    setStatus(false, "service unreachable, retrying");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function selectTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const pane of document.querySelectorAll("[data-pane]")) pane.hidden = pane.dataset.pane !== name;
}

function renderMessage(message) {
  $("subject").textContent = message.subject || "(no subject)";
  $("from").textContent = message.from;
  $("to").textContent = message.to;
  $("cc").textContent = message.cc;
  for (const cc of document.querySelectorAll(".cc")) cc.hidden = !message.cc;
  $("received").textContent = `${new Date(message.received).toLocaleString()} · ${formatSize(message.size)}`;
  $("notification").textContent = message.notification_id || "none";
  $("notification-status").textContent = message.notification_status ? `(${message.notification_status})` : "";
  $("raw").href = messageUrl(message.id, "/raw");
  $("raw").download = `${message.id}.eml`;
  $("text").textContent = message.text ?? "(this message has no text part)";
  $("headers").replaceChildren(
    ...message.headers.map(([name, value]) => {
      const row = element("tr", name.toLowerCase() === "x-notification-id" ? "key" : "");
      row.append(element("th", "", name), element("td", "", value));
      return row;
    }),
  );
  const htmlTab = document.querySelector('[data-tab="html"]');
  htmlTab.hidden = message.html === null;
  $("html").src = message.html === null ? "about:blank" : messageUrl(message.id, "/html");
  selectTab(message.html === null ? "text" : "html");
  $("view-empty").hidden = true;
  $("message").hidden = false;
}

function showPlaceholder(title, text) {
  $("message").hidden = true;
  const empty = $("view-empty");
  empty.replaceChildren(element("p", "empty-title", title), element("p", "", text));
  empty.hidden = false;
}

async function showSelected() {
  const id = decodeURIComponent(location.hash.slice(1));
  shown = id || null;
  unread.delete(id);
  for (const link of document.querySelectorAll("#messages a")) {
    if (link.dataset.id === id) {
      link.setAttribute("aria-current", "true");
      link.parentElement.classList.remove("new");
    } else link.removeAttribute("aria-current");
  }
  if (!id) return showPlaceholder("No message selected", "Pick a message on the left.");
  const response = await fetch(messageUrl(id), { cache: "no-store" });
  if (id !== shown) return; // another message was picked meanwhile
  if (!response.ok) return showPlaceholder("Message not found", "It is no longer in the inbox folder.");
  renderMessage(await response.json());
}

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => selectTab(tab.dataset.tab));
}
window.addEventListener("hashchange", showSelected);
showSelected();
poll();
