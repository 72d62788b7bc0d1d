// The gateway simulator: an ESP32 in the browser speaking PROTOCOL §3 over /ws/gateway.
import { LiveList, summary } from "./live.js";

export class Simulator {
  constructor(els, wsBase) {
    this.els = els;
    this.wsBase = wsBase;
    this.ws = null;
    this.log = new LiveList(els.log, { cap: 100 });
  }

  setStatus(text) {
    this.els.status.textContent = text;
    this.els.status.dataset.state = text.startsWith("Connected") ? "on" : "off";
  }

  connect(code, token) {
    this.stop();
    const ws = new WebSocket(this.wsBase + "/ws/gateway");
    this.ws = ws;
    this.setStatus("Connecting…");
    ws.addEventListener("open", () => {
      this.send(token ? { t: "auth", token } : { t: "pair", code });
    });
    ws.addEventListener("message", (event) => this.receive(event.data));
    ws.addEventListener("close", () => {
      if (this.ws === ws) {
        this.ws = null;
        this.setStatus("Disconnected");
      }
    });
  }

  stop() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
    this.setStatus("Disconnected");
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    this.log.push("→ " + summary(msg), msg);
    return true;
  }

  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.log.push("← (not JSON) " + String(data).slice(0, 120), data);
      return;
    }
    this.log.push("← " + summary(msg), msg);
    switch (msg.t) {
      case "pair_ok":
        this.els.token.value = msg.token;
        this.setStatus(`Connected as ${msg.serial}`);
        break;
      case "auth_ok":
        this.setStatus(`Connected as ${msg.serial}`);
        break;
      case "pair_error":
      case "auth_reset_required":
        this.setStatus("Disconnected");
        this.els.token.value = "";
        break;
      case "ping":
        this.send({ t: "pong" });
        break;
      case "cmd":
        // a real device executes first; the simulator just says it did
        this.send({ t: "ack", id: msg.id, ok: true });
        break;
    }
  }
}
