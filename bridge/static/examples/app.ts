// NXG MQTT app example (TypeScript, Node.js 22+: global fetch and WebSocket).
// Run: NXG_URL=http://127.0.0.1:8080 NXG_TOKEN=<admin password or API key> npx tsx app.ts
//
// Lists devices over REST with the Bearer credential, then follows /ws/app: presence,
// telemetry, status and acks, and sends one command to the first device. Reconnects with backoff.

const BASE = process.env.NXG_URL ?? "http://127.0.0.1:8080";
const TOKEN = process.env.NXG_TOKEN ?? "";

interface Device {
  serial: string;
  name: string | null;
  online: boolean;
  paired: boolean;
  last_seen: number | null;
  created_at: number;
}

type AppMessage =
  | { t: "device_online" | "device_offline"; serial: string; ts: number }
  | { t: "telemetry" | "status"; serial: string; ts: number; [field: string]: unknown }
  | { t: "event"; serial: string; ts: number; type: string; [field: string]: unknown }
  | { t: "ack"; serial: string; ts: number; id: string; ok: boolean; error?: string; result?: unknown }
  | { t: "cmd_accepted"; id: string; ref?: string }
  | { t: "error"; error: string; code?: string; ref?: string }
  | { t: "pong" };

interface Command {
  t: "cmd";
  serial: string;
  target?: string;
  action: string;
  params?: Record<string, unknown>;
  ref?: string;
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const value = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${value.error}`);
  return value as T;
}

function connect(onOpen: (send: (cmd: Command) => void) => void, backoffMs = 500): void {
  const url = BASE.replace(/^http/, "ws") + "/ws/app?token=" + encodeURIComponent(TOKEN);
  const ws = new WebSocket(url);
  const send = (cmd: Command) => ws.send(JSON.stringify(cmd));
  ws.addEventListener("open", () => {
    backoffMs = 500;
    console.log("connected to /ws/app");
    onOpen(send);
  });
  ws.addEventListener("message", (event) => {
    const msg = JSON.parse(String(event.data)) as AppMessage;
    switch (msg.t) {
      case "device_online":
      case "device_offline":
        console.log(`${msg.serial} is ${msg.t === "device_online" ? "online" : "offline"}`);
        break;
      case "telemetry":
      case "status":
        console.log(`${msg.t} from ${msg.serial}:`, msg);
        break;
      case "cmd_accepted":
        console.log(`command ${msg.id} accepted (ref ${msg.ref})`);
        break;
      case "ack":
        console.log(`command ${msg.id} on ${msg.serial}: ${msg.ok ? "done" : "failed: " + msg.error}`);
        break;
      case "error":
        console.error(`refused: ${msg.code} ${msg.error}`);
        break;
    }
  });
  ws.addEventListener("close", () => {
    const wait = Math.min(backoffMs, 15000) * (0.8 + Math.random() * 0.4);
    console.log(`disconnected; reconnecting in ${Math.round(wait)} ms`);
    setTimeout(() => connect(onOpen, backoffMs * 2), wait);
  });
}

async function main(): Promise<void> {
  const { devices } = await api<{ devices: Device[] }>("GET", "/api/devices");
  console.log("devices:", devices.map((d) => `${d.serial}${d.online ? " (online)" : ""}`).join(", ") || "none");
  connect((send) => {
    const first = devices.find((d) => d.online);
    if (first) send({ t: "cmd", serial: first.serial, target: "turn1", action: "open", ref: "demo-1" });
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
