// A bounded live list: newest first, at most PER_FRAME rows rendered per animation frame, at most
// `cap` rows kept (the oldest are dropped). Text only: a message never becomes HTML.

const PER_FRAME = 50;

export class LiveList {
  constructor(root, { cap = 200, onPick = null } = {}) {
    this.root = root;
    this.cap = cap;
    this.onPick = onPick;
    this.pending = [];
    this.count = 0; // rows rendered so far
    this.received = 0; // messages pushed so far (a burst beyond the cap is dropped unrendered)
    this.scheduled = false;
    this.rows = document.createElement("ol");
    this.rows.className = "rows";
    this.rows.reversed = true;
  }

  push(label, value) {
    this.received += 1;
    this.root.dataset.received = String(this.received);
    this.pending.push([label, value]);
    // a burst larger than the cap never reaches the page: only the newest `cap` can be shown
    if (this.pending.length > this.cap) this.pending.splice(0, this.pending.length - this.cap);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.scheduled = false;
    if (this.rows.parentNode !== this.root) this.root.replaceChildren(this.rows);
    const batch = this.pending.splice(0, PER_FRAME);
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) fragment.appendChild(this.row(...batch[i]));
    this.rows.prepend(fragment);
    while (this.rows.childElementCount > this.cap) this.rows.lastElementChild.remove();
    this.count += batch.length;
    this.root.dataset.count = String(this.count);
    if (this.pending.length > 0) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  row(label, value) {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString();
    const text = document.createElement(this.onPick ? "button" : "span");
    text.className = "msg";
    text.textContent = label;
    if (this.onPick) {
      text.type = "button";
      text.addEventListener("click", () => this.onPick(value, li));
    }
    li.append(time, text);
    return li;
  }
}

export function summary(msg) {
  const text = JSON.stringify(msg);
  return text.length > 160 ? text.slice(0, 157) + "…" : text;
}
