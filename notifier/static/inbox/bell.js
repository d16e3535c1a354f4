// The inbox bell: counts and a list from the API, kept live by the user's event stream.
// Plain JavaScript, no build step. Item text is only ever set as text, never as HTML.
"use strict";

(function () {
  const byId = (id) => document.getElementById(id);
  const bell = byId("bell");
  const badge = byId("badge");
  const panel = byId("panel");
  const list = byId("list");
  const empty = byId("empty");
  const status = byId("status");
  const EVENT_TYPES = ["counts", "new", "seen", "read", "unread", "archived", "unarchived", "read_all",
    "seen_all", "expired", "reset", "end"];
  let token = "";
  let source = null;
  let lastEventId = null;
  const items = new Map(); // id -> list element

  function api(method, path) {
    return fetch(path, { method, headers: { Authorization: token } }).then((response) => {
      if (!response.ok) {
        throw new Error(`${method} ${path}: ${response.status}`);
      }
      return response.status === 204 ? null : response.json();
    });
  }

  function showCounts(counts) {
    badge.textContent = counts.unread > 99 ? "99+" : String(counts.unread);
    badge.hidden = counts.unread === 0;
    bell.setAttribute("aria-label", `Notifications, ${counts.unread} unread`);
  }

  function render(item, first) {
    let row = items.get(item.id);
    if (!row) {
      row = document.createElement("li");
      const title = document.createElement("div");
      title.className = "title";
      const text = document.createElement("div");
      text.className = "text";
      row.append(title, text);
      row.dataset.id = item.id;
      row.addEventListener("click", () => api("POST", `/api/v1/me/notifications/${item.id}/read`));
      items.set(item.id, row);
      if (first) {
        list.prepend(row);
      } else {
        list.append(row);
      }
    }
    if (item.title !== undefined) {
      row.querySelector(".title").textContent = item.title;
      row.querySelector(".text").textContent = item.text;
    }
    if ("read_at" in item) {
      row.classList.toggle("unread", !item.read_at);
    }
    if (item.archived_at) {
      row.remove();
      items.delete(item.id);
    }
    empty.hidden = items.size > 0;
  }

  async function reload() {
    const [counts, page] = await Promise.all([
      api("GET", "/api/v1/me/notifications/counts"),
      api("GET", "/api/v1/me/notifications?channel=inbox&archived=false&limit=20"),
    ]);
    list.replaceChildren();
    items.clear();
    page.items.filter((item) => item.status === "sent").forEach((item) => render(item, false));
    empty.hidden = items.size > 0;
    showCounts(counts);
  }

  function onEvent(message) {
    lastEventId = message.lastEventId || lastEventId;
    const event = JSON.parse(message.data);
    if (event.counts) {
      showCounts(event.counts);
    }
    if (message.type === "new") {
      render(event.item, true);
    } else if (message.type === "expired") {
      const row = items.get(event.item_id); // retention removed it
      if (row) {
        row.remove();
        items.delete(event.item_id);
      }
    } else if (event.item) {
      if (items.has(event.item.id)) {
        render(event.item, false);
      }
    } else if (message.type === "read_all") {
      items.forEach((row) => row.classList.remove("unread"));
    } else if (message.type === "reset") {
      reload();
    } else if (message.type === "end") {
      source.close();
      source = null;
      if (event.reason.includes("token")) {
        status.textContent = "token expired: paste a new one";
      } else {
        status.textContent = "reconnecting";
        setTimeout(() => open().catch((error) => { status.textContent = String(error); }), 1000);
      }
    }
  }

  async function open() {
    // A ticket for each (re)connection: EventSource cannot send the token, and a URL must not carry it.
    const { ticket } = await api("POST", "/api/v1/me/stream/ticket");
    const resume = lastEventId === null ? "" : `&last_event_id=${encodeURIComponent(lastEventId)}`;
    source = new EventSource(`/api/v1/me/stream?ticket=${encodeURIComponent(ticket)}${resume}`);
    EVENT_TYPES.forEach((type) => source.addEventListener(type, onEvent));
    source.addEventListener("open", () => { status.textContent = "live"; });
    source.addEventListener("error", () => {
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (its ticket expired, say): reconnect with a new ticket, resuming after the last event.
        status.textContent = "reconnecting";
        source = null;
        setTimeout(() => open().catch((error) => { status.textContent = String(error); }), 1000);
      } else {
        status.textContent = "reconnecting";
      }
    });
  }

  byId("connect").addEventListener("click", async () => {
    token = byId("token").value.trim();
    if (source) {
      source.close();
      source = null;
    }
    lastEventId = null;
    status.textContent = "connecting";
    try {
      await reload();
      await open();
      bell.disabled = false;
    } catch (error) {
      status.textContent = String(error);
    }
  });

  bell.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    bell.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) {
      api("POST", "/api/v1/me/notifications/seen-all");
    }
  });

  byId("read-all").addEventListener("click", () => api("POST", "/api/v1/me/notifications/read-all"));
}());
