// End-to-end test of the chat demo (examples/chat) in real headless Chromium:
// two pages in one room exchange messages through `wsd serve --processes 2
// --history-size 200 --presence`, and keep chatting after a SIGHUP reload,
// after the worker of one page is killed with SIGKILL, and after the whole
// server is stopped and started again. During the reload and right after the
// kill the test publishes bursts of messages from outside (POST /publish),
// some while the pages are disconnected: the pages resume from the last
// offset they saw, and each shows every message once, in order. The online
// list, from the server's presence, names both after each disruption; a
// reloaded tab resumes too; after the restart (the history is lost with the
// master) the pages say that messages may be missing. The admin address must
// have counted the traffic and the restart.
// A screenshot of one page is written to artifacts/chat.png
// (UPDATE_SCREENSHOT=1 also copies it to docs/chat.png for the README).
//
// Run: cd e2e && npm ci && npm test   (or `make e2e` from the repository)
// Needs Go (to build bin/wsd, unless WSD_BIN names a binary) and Chromium at
// /usr/bin/chromium (CHROMIUM overrides).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");
const artifacts = path.join(here, "artifacts");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const room = "e2e";
const processes = 2;

let wsd; // the master process
let log; // its stderr, kept in artifacts/wsd.log
let browser;
let port;
let adminPort;
let published = 0; // numbers the test's own messages

// freePort asks the kernel for a port that nothing listens on now.
async function freePort() {
  const srv = net.createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

// eventually polls fn until it returns a truthy value or time runs out; an
// error with fatal set ends it at once.
async function eventually(what, fn, timeout = 15_000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      if (err?.fatal) throw err;
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ": " + last.message : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function ready() {
  const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
  return r.status === 200;
}

// workers lists the pids of the master's live children.
function workers() {
  const pids = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === wsd.pid && fields[0] !== "Z") pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

// openChat opens the chat in a browser context of its own (its own storage)
// as name, and follows which worker serves its WebSocket through the
// handshake's Wsd-Worker header.
async function openChat(name) {
  const context = await browser.newContext({ viewport: { width: 900, height: 960 } });
  const page = await context.newPage();
  const open = new Set(); // requestIds of its WebSockets past the handshake
  const chat = { name, page, context, handshakes: [], errors: [], connected: () => open.size > 0 };
  page.on("pageerror", (err) => chat.errors.push(err));
  // The console reports the failed WebSockets and presence requests of a
  // server that is down: expected.
  page.on("console", (m) => m.type() === "error" && !/WebSocket|Failed to load resource/.test(m.text()) && chat.errors.push(new Error(m.text())));
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", ({ requestId, response }) => {
    const headers = Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v]));
    chat.handshakes.push({ status: response.status, worker: Number(headers["wsd-worker"]) });
    if (response.status === 101) open.add(requestId);
  });
  cdp.on("Network.webSocketClosed", ({ requestId }) => open.delete(requestId));
  // The page keeps the name in localStorage; set before the page loads, it
  // is the name the page joins with.
  // (about:blank, where a test step sends the tab, has no localStorage.)
  await context.addInitScript((n) => location.protocol === "http:" && localStorage.setItem("wsd-chat-name", n), name);
  await page.goto(`http://127.0.0.1:${port}/#${room}`);
  assert.equal(await page.inputValue("#name"), name);
  return chat;
}

const worker = (chat) => chat.handshakes.at(-1)?.worker;

async function online(chat) {
  await chat.page.waitForSelector('#state[data-state="online"]', { timeout: 15_000 });
}

async function say(chat, text) {
  await online(chat);
  await chat.page.fill("#text", text);
  await chat.page.click("#send");
  // The sender shows its own message at once.
  await chat.page.locator(".msg.mine .body", { hasText: text }).waitFor({ timeout: 5_000 });
}

// publish posts a chat message into the room from outside the pages, as a
// back-end would, and returns its text. A request the server could not take
// (a worker killed under it) is sent again: the pages show a message once
// by its mid, however often it was published.
async function publish(label, pages) {
  const n = ++published;
  const text = `${label} ${n}`;
  const body = JSON.stringify({ type: "msg", id: "tester", mid: `tester:${n}`, name: "tester", text, ts: Date.now() });
  const away = pages.filter((c) => !c.connected()).map((c) => c.name);
  await eventually(`POST /publish of ${text}`, async () => {
    const r = await fetch(`http://127.0.0.1:${port}/publish/${room}`, { method: "POST", body });
    if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
    return true;
  }, 5_000);
  return { text, away };
}

// burst publishes count messages, gap ms apart, and returns them in order,
// with how many went out while some page had no WebSocket.
async function burst(label, pages, count, gap) {
  const sent = [];
  for (let i = 0; i < count; i++) {
    if (i) await new Promise((r) => setTimeout(r, gap));
    sent.push(await publish(label, pages));
  }
  return { texts: sent.map((m) => m.text), away: sent.filter((m) => m.away.length).length, log: sent };
}

// bodies is the text of every chat message the page shows, in order.
const bodies = (chat) => chat.page.locator(".msg .body").allTextContents();

// showsOnceInOrder waits until the page shows every one of texts, then
// checks that it shows each exactly once and in that order.
async function showsOnceInOrder(chat, texts) {
  const want = new Set(texts);
  await eventually(`${chat.name} to show ${texts.at(-1)} and the ones before`, async () => {
    const got = new Set((await bodies(chat)).filter((t) => want.has(t)));
    return got.size === want.size;
  });
  const got = (await bodies(chat)).filter((t) => want.has(t));
  assert.deepEqual(got, texts, `${chat.name} shows every message once, in publish order`);
}

// listsBoth waits until the page's online list, from the server's presence,
// counts the two pages and names both.
async function listsBoth(chat, names) {
  await eventually(`${chat.name}'s online list to show ${names.join(" and ")}`, async () => {
    const el = chat.page.locator("#online");
    const [text, title] = [await el.textContent(), (await el.getAttribute("title")) ?? ""];
    return text === `${names.length} online` && names.every((n) => title.split(", ").some((t) => t.replace(/ \(you\)$/, "") === n));
  });
}

async function hears(chat, from, text) {
  const msg = chat.page.locator(".msg:not(.mine)", { hasText: text });
  await msg.waitFor({ timeout: 10_000 });
  assert.match(await msg.locator(".meta").textContent(), new RegExp(`^${from} `));
}

// converse has a say the first line and b answer with the second; each
// must reach the other page.
async function converse(a, b, [line, answer]) {
  await say(a, line);
  await hears(b, a.name, line);
  await say(b, answer);
  await hears(a, b.name, answer);
}

let bin;

// startWsd starts `wsd serve` on port and waits until it is ready.
async function startWsd() {
  wsd = spawn(
    bin,
    [
      "serve",
      "--address", "127.0.0.1",
      "--port", String(port),
      "--processes", String(processes),
      "--history-size", "200",
      "--presence",
      "--drain-period", "1s",
      "--public", path.join(repo, "examples", "chat"),
      "--admin-address", `127.0.0.1:${adminPort}`,
      "--access-log",
      "--log-level", "debug",
    ],
    { cwd: repo, stdio: ["ignore", "pipe", "pipe"] },
  );
  wsd.stdout.pipe(log, { end: false });
  wsd.stderr.pipe(log, { end: false });
  let failed;
  wsd.on("error", (err) => (failed = err));
  wsd.on("exit", (code, sig) => (failed ??= new Error(`wsd exited (${code ?? sig}); see e2e/artifacts/wsd.log`)));
  await eventually("wsd to be ready", () => {
    if (failed) throw Object.assign(failed, { fatal: true });
    return ready();
  });
}

// stopWsd stops the master gracefully (SIGKILL after 15 s) and waits.
async function stopWsd() {
  if (!wsd || wsd.exitCode !== null || wsd.signalCode !== null) return;
  const exited = once(wsd, "exit");
  wsd.kill("SIGTERM");
  const timer = setTimeout(() => wsd.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  bin = process.env.WSD_BIN && path.resolve(process.env.WSD_BIN);
  if (!bin) {
    bin = path.join(repo, "bin", "wsd");
    execFileSync("go", ["build", "-o", bin, "./cmd/wsd"], { cwd: repo, stdio: "inherit" });
  }
  port = await freePort();
  adminPort = await freePort();
  log = fs.createWriteStream(path.join(artifacts, "wsd.log"));
  await startWsd();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await stopWsd();
  log?.end();
});

test("two pages chat through wsd across a reload, a killed worker and a restart", { timeout: 120_000 }, async (t) => {
  const alice = await openChat("alice");
  const bob = await openChat("bob");
  const both = [alice, bob];
  const names = both.map((c) => c.name);
  await online(alice);
  await online(bob);

  await t.test("they see each other online and chat", async () => {
    t.diagnostic(`alice on worker ${worker(alice)}, bob on worker ${worker(bob)}`);
    for (const c of both) await listsBoth(c, names);
    await converse(alice, bob, ["hi bob, are you there?", "hi alice! loud and clear"]);
  });

  await t.test("they reconnect after SIGHUP replaced every worker, and missed nothing", async () => {
    const before = new Set(workers());
    assert.equal(before.size, processes, `${processes} workers before the reload, got ${[...before]}`);
    const seen = [alice.handshakes.length, bob.handshakes.length];
    process.kill(wsd.pid, "SIGHUP");
    // The old workers close their sockets (1012) over the 1 s drain period,
    // while the new ones take the room's messages.
    const sent = await burst("reload burst", both, 12, 120);
    t.diagnostic(`${sent.away} of ${sent.texts.length} published while a page was disconnected`);
    // Every page comes back on a worker started by the reload.
    await eventually("both pages to reconnect to new workers", () =>
      both.every((c, i) => c.handshakes.length > seen[i] && !before.has(worker(c))),
    );
    await eventually("the old workers to exit", () => workers().every((p) => !before.has(p)));
    for (const c of both) await showsOnceInOrder(c, sent.texts);
    for (const c of both) await listsBoth(c, names);
    await converse(alice, bob, ["the server just reloaded its config", "didn't notice a thing"]);
  });

  await t.test("they reconnect after a worker was killed, and missed nothing", async () => {
    // alice's last word before the kill is newer than anything she got:
    // her resume replays it to her, and she must not show it twice.
    await say(alice, "one more thing before my worker dies");
    await hears(bob, alice.name, "one more thing before my worker dies");
    const victim = worker(alice);
    assert.ok(workers().includes(victim), `alice's worker ${victim} is a child of the master`);
    const hit = both.filter((c) => worker(c) === victim);
    const seen = hit.map((c) => c.handshakes.length);
    process.kill(victim, "SIGKILL");
    // The pages of the dead worker see their socket drop (1006) and come
    // back after their backoff (0.25 s at least): meanwhile the messages
    // reach only the history.
    const sent = await burst("kill burst", both, 8, 100);
    t.diagnostic(`${sent.away} of ${sent.texts.length} published while a page was disconnected`);
    assert.ok(sent.away > 0, `some messages were published while ${hit.map((c) => c.name).join(" and ")} had no WebSocket: ${JSON.stringify(sent.log)}`);
    // Every page the worker served (alice, and bob if he shared it) comes
    // back on another one.
    await eventually("the pages of the killed worker to reconnect", () =>
      hit.every((c, i) => c.handshakes.length > seen[i] && worker(c) !== victim),
    );
    await eventually("the master to replace the worker", async () => workers().length === processes && (await ready()));
    for (const c of both) await showsOnceInOrder(c, sent.texts);
    for (const c of both) await listsBoth(c, names);
    await converse(alice, bob, ["a worker was just killed", "still here, reconnected on my own"]);
  });

  await t.test("a reloaded tab resumes where it was", async () => {
    // The page keeps its position in sessionStorage, which outlives a
    // navigation within the tab.
    await bob.page.goto("about:blank");
    const sent = await burst("while bob was away", [alice], 3, 0);
    await bob.page.goto(`http://127.0.0.1:${port}/#${room}`);
    await online(bob);
    await showsOnceInOrder(bob, sent.texts);
    await showsOnceInOrder(alice, sent.texts);
    for (const c of both) await listsBoth(c, names);
    await converse(alice, bob, ["welcome back, bob", "I saw what I missed"]);
  });

  await t.test("the daemon counted the traffic", async () => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const sum = (name) =>
      text
        .split("\n")
        .filter((l) => l.startsWith(name + "{") || l.startsWith(name + " "))
        .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
    assert.ok(sum("wsd_websocket_connections") >= 2, "two WebSockets open");
    assert.ok(sum("wsd_websocket_messages_total") > 0, "messages counted");
    assert.ok(sum("wsd_worker_restarts_total") >= 1, "the killed worker's restart counted");
  });

  await t.test("they come back after the whole server restarted, and say what they may have missed", async () => {
    await stopWsd();
    for (const c of both) {
      await c.page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
    }
    await startWsd();
    await online(alice);
    await online(bob);
    // The history lived in the master: the pages' epoch is gone with it.
    for (const c of both) {
      await c.page.locator(".notice.warn", { hasText: "some messages may be missing" }).waitFor({ timeout: 10_000 });
    }
    for (const c of both) await listsBoth(c, names);
    await converse(alice, bob, ["the whole server restarted", "and we are back"]);
  });

  await t.test("each page showed every message once", async () => {
    for (const c of both) {
      const texts = await bodies(c);
      const twice = texts.filter((x, i) => texts.indexOf(x) !== i);
      assert.deepEqual(twice, [], `no message twice in ${c.name}'s page`);
    }
  });

  await alice.page.screenshot({ path: path.join(artifacts, "chat.png") });
  if (process.env.UPDATE_SCREENSHOT) {
    fs.mkdirSync(path.join(repo, "docs"), { recursive: true });
    fs.copyFileSync(path.join(artifacts, "chat.png"), path.join(repo, "docs", "chat.png"));
  }
  for (const c of both) {
    assert.deepEqual(c.errors, [], `no script errors in ${c.name}'s page`);
    await c.context.close();
  }
});
