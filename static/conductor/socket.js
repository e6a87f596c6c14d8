// The dashboard's WebSocket (docs/protocol.md): connecting, backing off, noticing a dead connection,
// asking for snapshots, and matching answers to the commands that asked. It knows nothing of the page:
// it hands each message (with what it answers) to ``onMessage`` and its state to ``onConn``.

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const SAFETY_SNAPSHOT_MS = 60_000; // events can be lost: resync from the database now and then
const NOT_LIVE_SNAPSHOT_MS = 5_000; // without live events the page refreshes the database view
const ANSWER_TIMEOUT_MS = 10_000; // an open socket that stops answering is dropped and reopened
const SLEEP_GAP_MS = 5_000; // a tick this late means the machine slept
const STABLE_AFTER_MS = 10_000; // a connection up this long resets the back-off
const SOON_MS = 300;
export const TICK_MS = 1_000;
export const CLOSE_SIGNED_OUT = 4001; // the session ended: logging in again helps, reconnecting does not
export const CLOSE_FORBIDDEN = 4003;
const FINAL_CLOSES = new Set([CLOSE_SIGNED_OUT, CLOSE_FORBIDDEN]);

export class Connection {
  /**
   * @param path the socket's path (the page's data-socket)
   * @param onMessage (message, pending) => void; pending is what the answered command asked, if any
   * @param onConn (conn) => void: {state: connecting|live|reconnecting|closed, code, attempts, retryAt}
   * @param wantsFrequentSnapshots () => boolean: live news is missing, read the database often
   * @param onTick () => void, once a second while the socket is open
   */
  constructor({ path, onMessage, onConn, wantsFrequentSnapshots = () => false, onTick = () => {} }) {
    Object.assign(this, { path, onMessage, onConn, wantsFrequentSnapshots, onTick });
    this.conn = { state: "connecting", code: null, attempts: 0, retryAt: null, liveSince: null };
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> what we asked
    this.awaitingSince = null; // when we asked the server something and have heard nothing since
    this.snapshotRequest = null; // id of the last snapshot asked for (an error answers it when the database is down)
    this.lastSnapshotAt = 0;
    this.lastTick = Date.now();
    this.retryTimer = null;
    this.soonTimer = null;
  }

  start() {
    const check = () => this.checkConnection();
    document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && check());
    window.addEventListener("online", check);
    window.addEventListener("pageshow", (event) => event.persisted && check());
    setInterval(() => this.tick(), TICK_MS);
    this.connect();
  }

  get open() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  setConn(changes) {
    this.conn = { ...this.conn, ...changes };
    this.onConn(this.conn);
  }

  url() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${this.path}`;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    this.awaitingSince = Date.now(); // the server sends a snapshot on connect
    ws.addEventListener("message", (event) => ws === this.ws && this.receive(event));
    ws.addEventListener("close", (event) => ws === this.ws && this.closed(event.code));
    this.setConn({ state: this.conn.attempts ? "reconnecting" : "connecting", retryAt: null });
  }

  /** The socket is gone: nothing asked on it will be answered. */
  forget() {
    const lost = [...this.pending.values()];
    this.ws = null;
    this.awaitingSince = null;
    this.pending.clear();
    for (const pending of lost) this.onMessage({ type: "lost" }, pending);
  }

  closed(code) {
    this.forget();
    if (FINAL_CLOSES.has(code)) {
      this.setConn({ state: "closed", code, retryAt: null });
      return; // signed out or not allowed: asking again would not help
    }
    // A connection that stayed up a while starts the back-off afresh; one that keeps dropping at once
    // (a server that accepts, then fails) backs off further each time.
    const stable = this.conn.liveSince && Date.now() - this.conn.liveSince > STABLE_AFTER_MS;
    const attempts = stable ? 1 : this.conn.attempts + 1;
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** (attempts - 1));
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.setConn({ state: "reconnecting", code, attempts, retryAt: Date.now() + delay, liveSince: null });
  }

  /** Drop a socket that stopped answering (a laptop lid, a dead NAT entry) and reconnect at once. */
  dropStale() {
    const ws = this.ws;
    this.forget();
    try {
      ws.close(4000, "no answer");
    } catch {
      // already closing
    }
    this.conn = { ...this.conn, attempts: 0 };
    this.connect();
  }

  /** After sleep, going online, or the tab becoming visible: make sure the page is connected and fresh. */
  checkConnection() {
    if (this.conn.state === "closed") return;
    if (!this.ws) {
      this.conn = { ...this.conn, attempts: 0 };
      this.connect();
    } else if (this.open) {
      this.requestSnapshot();
    }
  }

  /** Sends a command; returns its id, or null when not connected. */
  send(message, pending = null) {
    if (!this.open) return null;
    const id = this.nextId++;
    if (pending) this.pending.set(id, pending);
    this.ws.send(JSON.stringify({ ...message, id }));
    return id;
  }

  forgetRequest(id) {
    this.pending.delete(id);
  }

  requestSnapshot() {
    if (!this.open || this.awaitingSince !== null) return; // one question at a time is enough
    const id = this.send({ type: "snapshot" });
    this.awaitingSince = Date.now();
    this.snapshotRequest = id;
  }

  /** A snapshot a little later (several events may ask for one at once). */
  soonSnapshot() {
    if (this.soonTimer !== null) return;
    this.soonTimer = setTimeout(() => {
      this.soonTimer = null;
      this.requestSnapshot();
    }, SOON_MS);
  }

  receive(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === "snapshot") {
      this.awaitingSince = null;
      this.lastSnapshotAt = Date.now();
      const liveSince = this.conn.state === "live" ? this.conn.liveSince : Date.now();
      this.setConn({ state: "live", code: null, retryAt: null, liveSince });
    } else if (message.type === "error" && message.id !== null && message.id === this.snapshotRequest) {
      // No snapshot (the database is unreachable): an answer all the same; ask again as often as
      // while live news is missing.
      this.awaitingSince = null;
      this.lastSnapshotAt = Date.now();
      this.onMessage({ ...message, type: "snapshot.error" }, null);
      return;
    }
    const pending = message.id === undefined || message.id === null ? null : this.pending.get(message.id) ?? null;
    if (pending) this.pending.delete(message.id);
    this.onMessage(message, pending);
  }

  tick() {
    const now = Date.now();
    const slept = now - this.lastTick > SLEEP_GAP_MS;
    this.lastTick = now;
    const ws = this.ws;
    if (slept) this.checkConnection();
    else if (this.open) {
      if (this.awaitingSince !== null && now - this.awaitingSince > ANSWER_TIMEOUT_MS) this.dropStale();
      else {
        const every = this.wantsFrequentSnapshots() ? NOT_LIVE_SNAPSHOT_MS : SAFETY_SNAPSHOT_MS;
        if (now - this.lastSnapshotAt > every) this.requestSnapshot();
        this.onTick();
      }
    } else if (ws && ws.readyState === WebSocket.CONNECTING && now - this.awaitingSince > ANSWER_TIMEOUT_MS) {
      this.dropStale();
    }
  }
}
