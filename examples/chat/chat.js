// wsd chat: a room over wsd's pub/sub WebSocket endpoint, /pubsub/{room}.
//
// Every message in the room is a small JSON object:
//
//   {type: "msg",   id, mid, name, text, ts}   a chat message
//   {type: "join",  id, name, ts}              sent on (re)connecting
//   {type: "here",  id, name, ts}              heartbeat, and the answer to a join
//   {type: "leave", id, name, ts}              sent when the page goes away
//
// id is this page's random id, mid a message's own id. The server does not
// send a client its own messages back, so the page shows what it sends at
// once (and drops a copy that comes back, with --pubsub-echo). Pub/sub has
// no presence of its own: each page counts the peers it heard from in the
// last PRESENCE_TTL_MS.
//
// ?ws=/broadcast points the page at another endpoint (the /broadcast
// WebSocket has the same semantics within one worker process).
"use strict";

(() => {
  const HEARTBEAT_MS = 10_000;
  const PRESENCE_TTL_MS = 30_000;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 15_000;
  const MAX_TEXT = 2000;
  const MAX_ITEMS = 500;

  const $ = (id) => document.getElementById(id);
  const ui = {
    room: $("room"),
    state: $("state"),
    online: $("online"),
    messages: $("messages"),
    composer: $("composer"),
    name: $("name"),
    text: $("text"),
    send: $("send"),
  };

  const room = roomFromHash();
  const params = new URLSearchParams(location.search);
  const url = new URL(params.get("ws") || "/pubsub/" + encodeURIComponent(room), location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";

  const me = { id: randomId(), name: initialName() };
  const peers = new Map(); // id -> {name, seen}
  const shown = new Set(); // mids already on screen
  let ws = null;
  let attempt = 0; // reconnects since the last successful open
  let everOnline = false;
  let seq = 0;
  let heartbeat = 0;
  let retryTimer = 0;
  let countdown = 0;
  let hereTimer = 0;

  ui.room.textContent = room;
  document.title = `wsd chat #${room}`;
  ui.name.value = me.name;

  // --- connection -------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    setState(everOnline ? "reconnecting" : "connecting", everOnline ? "reconnecting…" : "connecting…");
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => {
      if (ws !== sock) return;
      attempt = 0;
      if (everOnline) notice("reconnected");
      everOnline = true;
      setState("online", "online");
      send({ type: "join" });
      heartbeat = setInterval(() => send({ type: "here" }), HEARTBEAT_MS);
    };
    sock.onmessage = (e) => receive(e.data);
    // An error is always followed by close; close alone drives the retry.
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      clearInterval(heartbeat);
      if (everOnline && attempt === 0) notice(`connection lost (${describeClose(e.code)})`);
      scheduleReconnect(e.code);
    };
  }

  // scheduleReconnect waits an exponentially growing delay with jitter, so
  // that the clients of a restarted server do not all come back at once.
  function scheduleReconnect(code) {
    let delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    delay = delay / 2 + Math.random() * (delay / 2);
    if (code === 1001 && attempt === 0) delay = Math.random() * BACKOFF_BASE_MS; // server going away: come back soon
    attempt++;
    const at = Date.now() + delay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      setState("reconnecting", s > 0 ? `reconnecting in ${s}s` : "reconnecting…");
    };
    tick();
    countdown = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delay);
  }

  function send(m) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ ...m, id: me.id, name: me.name, ts: Date.now() }));
    return true;
  }

  // Try at once when the network or the tab comes back.
  function retryNow() {
    if (!ws && retryTimer) connect();
  }
  addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && retryNow());
  addEventListener("pagehide", () => send({ type: "leave" }));
  addEventListener("hashchange", () => location.reload());

  // --- incoming ---------------------------------------------------------

  function receive(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    if (!m || typeof m !== "object" || typeof m.id !== "string") return;
    const name = cleanName(m.name);
    if (m.id === me.id) {
      if (m.type === "msg") shown.add(String(m.mid)); // our own, echoed: already shown
      return;
    }
    switch (m.type) {
      case "join":
        if (!peers.has(m.id)) notice(`${name} joined`);
        touch(m.id, name);
        answerJoin();
        break;
      case "here":
        if (!peers.has(m.id)) notice(`${name} is here`);
        touch(m.id, name);
        break;
      case "leave":
        if (peers.delete(m.id)) notice(`${name} left`);
        renderOnline();
        break;
      case "msg":
        touch(m.id, name);
        if (typeof m.text === "string" && !shown.has(String(m.mid))) {
          shown.add(String(m.mid));
          message(name, m.text.slice(0, MAX_TEXT), m.ts, false);
        }
        break;
    }
  }

  // answerJoin tells a newcomer who is here, once for a burst of joins and
  // after a random pause, so that a room does not answer in one spike.
  function answerJoin() {
    if (hereTimer) return;
    hereTimer = setTimeout(() => {
      hereTimer = 0;
      send({ type: "here" });
    }, 100 + Math.random() * 400);
  }

  function touch(id, name) {
    const known = peers.get(id);
    if (known && known.name !== name) notice(`${known.name} is now ${name}`);
    peers.set(id, { name, seen: Date.now() });
    renderOnline();
  }

  setInterval(() => {
    const old = Date.now() - PRESENCE_TTL_MS;
    for (const [id, p] of peers) if (p.seen < old) peers.delete(id);
    renderOnline();
  }, 5000);

  // --- outgoing ---------------------------------------------------------

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.text.value.trim().slice(0, MAX_TEXT);
    if (!text) return;
    const mid = `${me.id}:${++seq}`;
    if (!send({ type: "msg", mid, text })) return; // offline: keep the text
    shown.add(mid);
    message(me.name, text, Date.now(), true);
    ui.text.value = "";
    ui.text.focus();
  });

  ui.name.addEventListener("change", () => {
    const name = cleanName(ui.name.value);
    if (name === me.name) return;
    me.name = name;
    ui.name.value = name;
    try {
      localStorage.setItem("wsd-chat-name", name);
    } catch {}
    send({ type: "here" });
  });

  // --- rendering --------------------------------------------------------

  function setState(state, text) {
    ui.state.dataset.state = state;
    ui.state.textContent = text;
    ui.send.disabled = state !== "online";
  }

  function renderOnline() {
    const n = peers.size + 1;
    ui.online.textContent = `${n} online`;
    ui.online.title = [me.name + " (you)", ...[...peers.values()].map((p) => p.name)].join(", ");
  }

  function message(name, text, ts, mine) {
    const li = document.createElement("li");
    li.className = mine ? "msg mine" : "msg";
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${mine ? "you" : name} · ${clock(ts)}`;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = text;
    li.append(meta, body);
    append(li);
  }

  function notice(text) {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = text;
    append(li);
  }

  function append(li) {
    const list = ui.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(li);
    while (list.children.length > MAX_ITEMS) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // --- helpers ----------------------------------------------------------

  function roomFromHash() {
    let r = "";
    try {
      r = decodeURIComponent(location.hash.slice(1)).trim();
    } catch {}
    return /^[\w.-]{1,64}$/.test(r) ? r : "lobby";
  }

  function initialName() {
    try {
      const saved = localStorage.getItem("wsd-chat-name");
      if (saved) return cleanName(saved);
    } catch {}
    return "guest-" + (1000 + Math.floor(Math.random() * 9000));
  }

  function cleanName(n) {
    return (typeof n === "string" ? n.trim().slice(0, 32) : "") || "anonymous";
  }

  function randomId() {
    const b = new Uint8Array(8);
    crypto.getRandomValues(b); // unlike randomUUID, available on plain http
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function clock(ts) {
    const d = new Date(typeof ts === "number" ? ts : Date.now());
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function describeClose(code) {
    const names = { 1000: "closed", 1001: "server going away", 1006: "connection dropped", 1008: "policy", 1011: "server error", 1012: "server restarting" };
    return names[code] ? `${code} ${names[code]}` : String(code);
  }

  renderOnline();
  connect();
})();
