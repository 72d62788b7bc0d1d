// The NXG Developer Portal (seed 000). Vanilla ES modules, no build step; the credential lives in
// sessionStorage only and reaches the server as `Authorization: Bearer` (REST) or `?token=`
// (the browser WebSocket API cannot set headers).
import { LiveList, summary } from "./live.js";
import { Simulator } from "./simulator.js";

const KEY = "nxg.credential";
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const DEVICE_KINDS = new Set(["telemetry", "status", "event", "ack", "device_online", "device_offline"]);

const $ = (id) => document.getElementById(id);
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

let credential = null;
let appSocket = null;
let backoff = BACKOFF_MIN_MS;
let retryTimer = null;
let nextRef = 1;
const pendingCommands = new Map(); // ref → row of the command result, then id → the same

function setStatus(text, state) {
  const el = $("conn-status");
  el.textContent = text;
  el.dataset.state = state;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${credential}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const type = response.headers.get("content-type") || "";
  const value = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = value && typeof value === "object" && value.error ? value.error : `HTTP ${response.status}`;
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return value;
}

// --- credentials -----------------------------------------------------------------------------

async function login(candidate) {
  $("login-error").textContent = "";
  setStatus("Connecting…", "pending");
  credential = candidate;
  try {
    await api("GET", "/api/devices");
  } catch (err) {
    credential = null;
    sessionStorage.removeItem(KEY);
    $("login-error").textContent = err.message;
    setStatus("Not connected: enter the admin password or an API key", "off");
    return;
  }
  sessionStorage.setItem(KEY, candidate);
  document.body.dataset.auth = "yes";
  backoff = BACKOFF_MIN_MS;
  openAppSocket();
}

// --- /ws/app ---------------------------------------------------------------------------------

const appList = new LiveList($("live-app"), { cap: 200, onPick: (msg, row) => showDetail("app-detail", msg, row) });
const deviceList = new LiveList($("live-devices"), {
  cap: 200,
  onPick: (msg, row) => showDetail("device-detail", msg, row),
});

function showDetail(id, msg, row) {
  const detail = $(id);
  detail.textContent = JSON.stringify(msg, null, 2);
  detail.hidden = false;
  for (const el of document.querySelectorAll(".rows li.picked")) el.classList.remove("picked");
  row.classList.add("picked");
}

function openAppSocket() {
  clearTimeout(retryTimer);
  if (appSocket) appSocket.close();
  setStatus("Connecting…", "pending");
  const ws = new WebSocket(`${wsBase}/ws/app?token=${encodeURIComponent(credential)}`);
  appSocket = ws;
  ws.addEventListener("open", () => {
    backoff = BACKOFF_MIN_MS;
    setStatus("Connected", "on");
  });
  ws.addEventListener("message", (event) => onAppMessage(event.data));
  ws.addEventListener("close", () => {
    if (appSocket !== ws) return;
    appSocket = null;
    if (!credential) return;
    const wait = Math.round(backoff * (0.8 + Math.random() * 0.4));
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    setStatus(`Disconnected: reconnecting in ${(wait / 1000).toFixed(1)} s…`, "off");
    retryTimer = setTimeout(openAppSocket, wait);
  });
}

function onAppMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  appList.push(summary(msg), msg);
  if (DEVICE_KINDS.has(msg.t)) deviceList.push(summary(msg), msg);
  trackCommand(msg);
}

// --- send a command --------------------------------------------------------------------------

function commandLine(text) {
  const out = $("cmd-result");
  out.textContent = (out.textContent ? out.textContent + "\n" : "") + text;
}

function trackCommand(msg) {
  if ((msg.t === "cmd_accepted" || msg.t === "error") && pendingCommands.has(msg.ref)) {
    pendingCommands.delete(msg.ref);
    commandLine("← " + JSON.stringify(msg));
    if (msg.t === "cmd_accepted") pendingCommands.set(`id:${msg.id}`, true);
  } else if (msg.t === "ack" && pendingCommands.has(`id:${msg.id}`)) {
    pendingCommands.delete(`id:${msg.id}`);
    commandLine("← " + JSON.stringify(msg));
  }
}

function sendCommand(event) {
  event.preventDefault();
  $("cmd-result").textContent = "";
  if (!appSocket || appSocket.readyState !== WebSocket.OPEN) {
    commandLine("Not connected: enter the password or an API key above.");
    return;
  }
  let params;
  try {
    params = JSON.parse($("cmd-params").value || "{}");
  } catch {
    commandLine("Params must be JSON, e.g. {}");
    return;
  }
  const ref = `portal-${nextRef++}`;
  const msg = { t: "cmd", serial: $("cmd-serial").value.trim(), action: $("cmd-action").value.trim(), params, ref };
  const target = $("cmd-target").value.trim();
  if (target) msg.target = target;
  pendingCommands.set(ref, true);
  appSocket.send(JSON.stringify(msg));
  commandLine("→ " + JSON.stringify(msg));
}

// --- device setup ----------------------------------------------------------------------------

let registered = null;

async function register(event) {
  event.preventDefault();
  $("reg-error").textContent = "";
  if (!credential) {
    $("reg-error").textContent = "Connect first (password or API key above).";
    return;
  }
  const serial = $("reg-serial").value.trim();
  try {
    const device = await api("POST", "/api/devices", serial ? { serial } : {});
    registered = device.serial;
    $("reg-out-serial").textContent = device.serial;
    $("reg-out-code").textContent = device.code;
    $("reg-result").hidden = false;
    $("reg-actions").hidden = false;
    $("config-h").hidden = true;
    $("sim-code").value = device.code;
    $("cmd-serial").value = device.serial;
  } catch (err) {
    $("reg-error").textContent = err.message;
  }
}

async function downloadConfig() {
  if (!registered) return;
  try {
    const text = await api("GET", `/api/devices/${encodeURIComponent(registered)}/config.h`);
    $("config-h").textContent = text;
    $("config-h").hidden = false;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/x-c" }));
    link.download = "config.h";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    $("reg-error").textContent = err.message;
  }
}

// --- static content: examples, REST table, code ----------------------------------------------

function examples(el, items) {
  el.replaceChildren();
  for (const [caption, value] of items) {
    const figure = document.createElement("figure");
    const title = document.createElement("figcaption");
    title.textContent = caption;
    const pre = document.createElement("pre");
    pre.className = "code example";
    pre.textContent = JSON.stringify(value);
    figure.append(title, pre);
    el.appendChild(figure);
  }
}

async function loadMeta() {
  const meta = await (await fetch("/portal/meta.json")).json();
  const ex = meta.examples;
  const ts = 1700000000000;
  examples($("device-send"), [
    ["pair (first connect)", ex.pair_request],
    ["auth (later connects)", { t: "auth", token: "..." }],
    ["telemetry", { t: "telemetry", ...ex.telemetry }],
    ["status", { t: "status", ...ex.status }],
    ["event", { t: "event", ...ex.event }],
    ["ack", ex.ack],
    ["pong", { t: "pong" }],
  ]);
  examples($("device-receive"), [
    ["pair_ok", { t: "pair_ok", serial: "esp32-demo", token: "..." }],
    ["auth_ok", { t: "auth_ok", serial: "esp32-demo" }],
    ["cmd", ex.cmd],
    ["ping", { t: "ping" }],
  ]);
  examples($("app-receive"), [
    ["device_online", { t: "device_online", serial: "esp32-demo", ts }],
    ["telemetry", { t: "telemetry", serial: "esp32-demo", ts, ...ex.telemetry }],
    ["status", { t: "status", serial: "esp32-demo", ts, ...ex.status }],
    ["cmd_accepted", { t: "cmd_accepted", id: ex.cmd.id, ref: "r1" }],
    ["ack", { ...ex.ack, serial: "esp32-demo", ts }],
  ]);
  examples($("app-send"), [
    ["cmd", { t: "cmd", serial: "esp32-demo", target: ex.cmd.target, action: ex.cmd.action, params: {}, ref: "r1" }],
    ["ping", { t: "ping" }],
  ]);
  const body = $("rest-table").tBodies[0];
  body.replaceChildren();
  for (const route of meta.routes) {
    const tr = document.createElement("tr");
    for (const [i, text] of [route.method, route.path, route.description].entries()) {
      const td = document.createElement("td");
      if (i < 2) {
        const code = document.createElement("code");
        code.textContent = text;
        td.appendChild(code);
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function loadCode(id, path) {
  const response = await fetch(path);
  $(id).textContent = response.ok ? await response.text() : `(could not load ${path})`;
}

function copy(event) {
  const button = event.currentTarget; // gone from the event once the promise settles
  const text = $(button.dataset.copy).textContent;
  if (!navigator.clipboard) return;
  navigator.clipboard.writeText(text).then(
    () => (button.textContent = "Copied"),
    () => (button.textContent = "Select the text to copy"),
  );
}

// --- wiring ----------------------------------------------------------------------------------

function start() {
  $("gateway-url").textContent = `${wsBase}/ws/gateway`;
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("credential").value.trim();
    if (value) login(value);
  });
  $("register").addEventListener("submit", register);
  $("download-config").addEventListener("click", downloadConfig);
  $("cmd-form").addEventListener("submit", sendCommand);
  for (const button of document.querySelectorAll("button.copy")) button.addEventListener("click", copy);

  const sim = new Simulator(
    { status: $("sim-status"), log: $("sim-log"), token: $("sim-token") },
    wsBase,
  );
  $("sim-connect").addEventListener("submit", (event) => {
    event.preventDefault();
    sim.connect($("sim-code").value.trim(), $("sim-token").value.trim());
  });
  $("sim-stop").addEventListener("click", () => sim.stop());
  $("sim-send").addEventListener("submit", (event) => {
    event.preventDefault();
    let fields;
    try {
      fields = JSON.parse($("sim-body").value || "{}");
    } catch {
      sim.log.push("fields must be a JSON object", null);
      return;
    }
    const msg = { t: $("sim-kind").value, ...fields };
    msg.t = $("sim-kind").value; // "t" first, and the chosen kind even if the fields name another
    sim.send(msg);
  });
  $("sim-kind").addEventListener("change", () => {
    $("sim-body").value = $("sim-kind").value === "status" ? '{"door1": "closed"}' : '{"temp": 22.5, "hum": 41}';
  });

  loadMeta().catch(() => {});
  loadCode("code-c", "/static/examples/app_main.c");
  loadCode("code-ts", "/static/examples/app.ts");

  const saved = sessionStorage.getItem(KEY);
  if (saved) login(saved);
  else setStatus("Not connected: enter the admin password or an API key", "off");
}

start();
