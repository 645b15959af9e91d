// The serial console page: xterm.js on a WebSocket that herd-rapi relays to the primary
// node's noded (herd/web/consoles.py). A one-time ticket is fetched with the page's CSRF
// token and sent as the socket's first message; the server answers "ok", then raw bytes flow.
// No inline script: the page's CSP allows scripts from /ui/static only.
"use strict";
(function () {
  const el = document.getElementById("console");
  const state = document.getElementById("console-state");
  const encoder = new TextEncoder();
  const term = new Terminal({ cursorBlink: true, scrollback: 5000, convertEol: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  window.addEventListener("resize", () => fit.fit());
  window.herdTerminal = term; // for the browser tests (read the whole buffer)
  let ws = null;

  function show(name, text) {
    state.dataset.state = name;
    state.textContent = text || name;
  }

  async function ticket() {
    const answer = await fetch(el.dataset.ticketUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": el.dataset.csrf,
                 "Content-Type": "application/x-www-form-urlencoded" },
      body: "kind=serial",
    });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || ("HTTP " + answer.status));
    return body.ticket;
  }

  function send(text) {
    if (ws && ws.readyState === WebSocket.OPEN && state.dataset.state === "connected") {
      ws.send(encoder.encode(text));
    }
  }

  async function connect() {
    show("connecting");
    let t;
    try {
      t = await ticket();
    } catch (err) {
      show("closed", "refused: " + err.message);
      return;
    }
    ws = new WebSocket("wss://" + location.host + el.dataset.wsPath);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(t);
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        if (event.data === "ok") {
          show("connected");
          term.focus();
        }
        return;
      }
      term.write(new Uint8Array(event.data));
    };
    ws.onclose = (event) => {
      show("closed", "closed" + (event.reason ? ": " + event.reason : ""));
    };
  }

  term.onData(send);
  document.getElementById("paste-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = document.getElementById("paste");
    send(box.value.replace(/\r?\n/g, "\r"));
    box.value = "";
    term.focus();
  });
  connect();
})();
