// wsd chat: a room over wsd's pub/sub WebSocket endpoint, /pubsub/{room}.
//
// The page subscribes with
//
//   /pubsub/{room}?format=json&presence=1&user=<name>[&offset=N&epoch=E]
//
// and every text message the server sends it is JSON, one of:
//
//   {"status":"subscribed","offset","epoch","recovered","replayed"}
//       first: where the room stands, and on a resume whether every
//       message missed since offset/epoch follows (replayed of them)
//   {"offset","epoch","data"}
//       a chat message in its envelope; data is what the sender sent
//   {"presence":"join"|"leave","channel","client","user"}
//       someone subscribed to the room, or stopped
//
// What the pages send (and find in data) is a small JSON object:
//
//   {type: "msg", id, mid, name, text, ts}
//
// id is this tab's random id, mid a message's own id. The server does not
// send a client its own messages back live, so the page shows what it
// sends at once; a resume's replay does include them, and so would
// --pubsub-echo: every message is shown once, by mid.
//
// The page keeps the position (offset, epoch) of the last message it got,
// in sessionStorage too, and reconnects (or reloads) from there: the server
// replays what was published meanwhile, then the live stream. When it
// cannot (its history was lost, or is too short), the page says that some
// messages may be missing.
//
// Who is online is the server's presence: GET /presence/{room}, asked again
// whenever a join or leave event comes. user= is the name the page is listed
// under, so a new name means a new connection.
"use strict";

(() => {
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 15_000;
  const PRESENCE_DEBOUNCE_MS = 200;
  const PRESENCE_RETRIES = 5; // for this page's own listing, see refreshPresence
  const PRESENCE_RETRY_MS = 300;
  const LEAVE_GRACE_MS = 3_000; // a peer that reconnects within it never "left"
  const MAX_TEXT = 2000;
  const MAX_ITEMS = 500;

  const utf8 = new TextEncoder();
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
  const posKey = "wsd-chat-pos:" + room;
  const presenceURL = new URL("/presence/" + encodeURIComponent(room), location.href);

  const me = { id: tabId(), name: initialName() };
  const shown = new Set(); // mids already on screen
  let pos = loadPosition(); // {offset, epoch} of the last message seen, or null
  let resumed = false; // the current connection asked for what it missed
  let lost = false; // the connection dropped since the last status
  let users = null; // the names online at the last presence answer (null: not asked yet)
  const leaving = new Map(); // name -> timer of its "left" notice
  let ws = null;
  let attempt = 0; // reconnects since the last successful open
  let everOnline = false;
  let retryTimer = 0;
  let countdown = 0;
  let presenceTimer = 0;
  let presenceRetries = 0; // left for an answer that lists this page
  let presenceAsked = 0; // numbers the presence requests: only the latest answer counts

  ui.room.textContent = room;
  document.title = `wsd chat #${room}`;
  ui.name.value = me.name;

  // --- connection -------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    retryTimer = 0;
    setState(everOnline ? "reconnecting" : "connecting", everOnline ? "reconnecting…" : "connecting…");
    resumed = pos !== null;
    const sock = new WebSocket(socketURL());
    ws = sock;
    sock.onopen = () => {
      if (ws !== sock) return;
      attempt = 0;
      everOnline = true;
      setState("online", "online");
    };
    // A socket given up (by a rename) may still be draining: what it says
    // comes again on its successor, which resumes from the same position.
    sock.onmessage = (e) => ws === sock && receive(e.data);
    // An error is always followed by close; close alone drives the retry.
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      if (everOnline && attempt === 0) notice(`connection lost (${describeClose(e.code)})`);
      lost ||= everOnline;
      scheduleReconnect(e.code);
    };
  }

  // socketURL subscribes to the room as me.name, from the last position
  // seen if there is one.
  function socketURL() {
    const u = new URL("/pubsub/" + encodeURIComponent(room), location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    u.searchParams.set("format", "json");
    u.searchParams.set("presence", "1");
    u.searchParams.set("user", me.name);
    if (pos) {
      u.searchParams.set("offset", String(pos.offset));
      u.searchParams.set("epoch", pos.epoch);
    }
    return u;
  }

  // scheduleReconnect waits an exponentially growing delay with jitter, so
  // that the clients of a restarted server do not all come back at once.
  function scheduleReconnect(code) {
    let delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    delay = delay / 2 + Math.random() * (delay / 2);
    // Going away (1001) or restarting (1012): the server is up and already
    // spreads these closes over its drain period, so come back soon.
    if ((code === 1001 || code === 1012) && attempt === 0) delay = Math.random() * BACKOFF_BASE_MS;
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

  // reconnectNow replaces the connection at once, for a new name: the
  // successor resumes from the last position, so nothing is lost between.
  function reconnectNow() {
    const old = ws;
    ws = null;
    old?.close(1000, "reconnecting");
    connect();
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
  addEventListener("hashchange", () => location.reload());

  // --- incoming ---------------------------------------------------------

  function receive(raw) {
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    if (!m || typeof m !== "object") return;
    if (m.status === "subscribed") subscribed(m);
    else if (m.presence === "join" || m.presence === "leave") schedulePresence();
    else if (typeof m.data === "string") envelope(m);
  }

  // subscribed takes the status that starts every connection.
  function subscribed(st) {
    // An empty epoch: the server keeps no history, and what was sent
    // while the page was away is gone.
    const missing = st.epoch ? resumed && !st.recovered : lost;
    if (missing) {
      notice("reconnected, but some messages may be missing: the server could not replay all that was sent meanwhile", "warn");
    } else if (lost) {
      notice("reconnected");
    }
    lost = false;
    // The replayed messages move the position themselves, one by one, so
    // that a connection lost halfway resumes from where it stopped.
    if (!st.replayed) setPosition(st.offset, st.epoch);
    presenceRetries = PRESENCE_RETRIES;
    refreshPresence();
  }

  function envelope(env) {
    setPosition(env.offset, env.epoch);
    if (env.binary) return; // the pages send text only
    let m;
    try {
      m = JSON.parse(env.data);
    } catch {
      return;
    }
    if (!m || m.type !== "msg" || typeof m.text !== "string") return;
    const mid = String(m.mid);
    if (shown.has(mid)) return; // our own coming back, or a message seen before a reconnect
    shown.add(mid);
    message(cleanName(m.name), m.text.slice(0, MAX_TEXT), m.ts, m.id === me.id);
  }

  // --- position ---------------------------------------------------------

  // setPosition remembers where the room stands for this page. An empty
  // epoch means that the server keeps no history: there is nothing to
  // resume from.
  function setPosition(offset, epoch) {
    pos = typeof offset === "number" && typeof epoch === "string" && epoch ? { offset, epoch } : null;
    try {
      if (pos) sessionStorage.setItem(posKey, JSON.stringify(pos));
      else sessionStorage.removeItem(posKey);
    } catch {}
  }

  function loadPosition() {
    try {
      const p = JSON.parse(sessionStorage.getItem(posKey));
      if (p && Number.isSafeInteger(p.offset) && typeof p.epoch === "string" && p.epoch) return p;
    } catch {}
    return null;
  }

  // --- presence ---------------------------------------------------------

  // schedulePresence asks who is online a moment after a join or leave
  // event, once for a burst of them (a reload reconnects a whole room).
  function schedulePresence(delay = PRESENCE_DEBOUNCE_MS) {
    clearTimeout(presenceTimer);
    presenceTimer = setTimeout(refreshPresence, delay);
  }

  // refreshPresence asks the server who is online. This page is listed a
  // moment after its status message (the listing goes through the master),
  // and its own join event may come before it subscribed to the events:
  // while retries last, an answer without our own name is asked again.
  async function refreshPresence() {
    const asked = ++presenceAsked;
    let members;
    try {
      const r = await fetch(presenceURL, { cache: "no-store" });
      if (!r.ok) throw new Error(r.statusText);
      members = (await r.json()).members;
    } catch {
      members = null; // the next event or connection asks again
    }
    if (asked !== presenceAsked || !Array.isArray(members)) return;
    updateOnline(members);
    if (members.some((m) => m.user === me.name)) presenceRetries = 0;
    else if (presenceRetries-- > 0) schedulePresence(PRESENCE_RETRY_MS);
  }

  // updateOnline shows the members, and who joined or left since the last
  // answer, by name: a peer that reconnects, or opens a second tab, is not
  // news. A name gone only says "left" if it is still gone LEAVE_GRACE_MS
  // later, as after a reload everyone leaves and comes back.
  function updateOnline(members) {
    const now = new Set(members.map((m) => cleanName(m.user)));
    if (users) {
      for (const u of now) {
        if (u === me.name || users.has(u)) continue;
        if (leaving.has(u)) {
          clearTimeout(leaving.get(u));
          leaving.delete(u);
        } else {
          notice(`${u} joined`);
        }
      }
      for (const u of users) {
        if (u === me.name || now.has(u) || leaving.has(u)) continue;
        const timer = setTimeout(() => {
          leaving.delete(u);
          if (!users.has(u)) notice(`${u} left`);
        }, LEAVE_GRACE_MS);
        leaving.set(u, timer);
      }
    }
    users = now;
    renderOnline(members.length);
  }

  // --- outgoing ---------------------------------------------------------

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.text.value.trim().slice(0, MAX_TEXT);
    if (!text) return;
    const mid = `${me.id}:${randomId()}`; // unique even across reloads of this tab
    if (!send({ type: "msg", mid, text })) return; // offline: keep the text
    shown.add(mid);
    message(me.name, text, Date.now(), true);
    ui.text.value = "";
    ui.text.focus();
  });

  ui.name.addEventListener("change", () => {
    const name = cleanName(ui.name.value);
    ui.name.value = name;
    if (name === me.name) return;
    users?.delete(me.name); // our old name leaving is not news to us
    me.name = name;
    try {
      localStorage.setItem("wsd-chat-name", name);
    } catch {}
    // The presence lists a connection under the user it opened with.
    if (ws) reconnectNow();
  });

  // --- rendering --------------------------------------------------------

  function setState(state, text) {
    ui.state.dataset.state = state;
    ui.state.textContent = text;
    ui.send.disabled = state !== "online";
  }

  // renderOnline shows how many are connected (a person with two tabs
  // counts twice), and their names in the title.
  function renderOnline(count) {
    ui.online.textContent = `${count} online`;
    const names = [...users].sort().map((u) => (u === me.name ? u + " (you)" : u));
    ui.online.title = names.join(", ");
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

  function notice(text, kind) {
    const li = document.createElement("li");
    li.className = kind ? "notice " + kind : "notice";
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

  // tabId is kept in sessionStorage, like the position: after a reload of
  // the tab, its own messages in the replay are still its own.
  function tabId() {
    try {
      const saved = sessionStorage.getItem("wsd-chat-id");
      if (saved) return saved;
      const id = randomId();
      sessionStorage.setItem("wsd-chat-id", id);
      return id;
    } catch {
      return randomId();
    }
  }

  // cleanName makes a name the server takes as user=: at most 64 bytes of
  // UTF-8 without control characters (and 32 characters, as the input).
  function cleanName(n) {
    let chars = [...(typeof n === "string" ? n.replace(/\p{Cc}/gu, "").trim() : "")].slice(0, 32);
    while (utf8.encode(chars.join("")).length > 64) chars.pop();
    return chars.join("").trim() || "anonymous";
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
    const names = { 1000: "closed", 1001: "server going away", 1006: "connection dropped", 1008: "policy", 1011: "server error", 1012: "server restarting", 1013: "try again later" };
    return names[code] ? `${code} ${names[code]}` : String(code);
  }

  connect();
})();
