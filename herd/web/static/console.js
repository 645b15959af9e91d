// The serial console page: xterm.js on a WebSocket that herd-rapi relays to the primary
// node's noded (herd/web/consoles.py). A one-time ticket is fetched with the page's CSRF
// token and sent as the socket's first message; the server answers "ok", then raw bytes flow.
// No inline script: the page's CSP allows scripts from /ui/static only. An ES module (strict,
// deferred, its names its own), run after xterm.js and its fit addon, which come first in the
// page as deferred classic scripts.
import { fetchTicket, stateShower } from "./console-session.js";

(function () {
  const el = document.getElementById("console");
  const state = document.getElementById("console-state");
  const encoder = new TextEncoder();
  const term = new Terminal({ cursorBlink: true, scrollback: 5000, convertEol: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  const copyStyles = adoptTerminalStyles();
  term.open(el);
  copyStyles(); // now, not at the observer's next turn: fit measures the laid-out screen
  fit.fit();
  window.addEventListener("resize", () => fit.fit());
  window.herdTerminal = term; // for the browser tests (read the whole buffer)
  let ws = null;

  // xterm.js writes its colours, font and cell sizes into <style> elements it adds (in the
  // terminal and in <head>) and rewrites them as they change. The pages' CSP (style-src
  // 'self') keeps those from applying: the screen would be the page's dark text on black. A
  // style sheet constructed by this (trusted) script may be adopted under that CSP, so the
  // same rules are copied into one whenever xterm.js adds or rewrites a <style>.
  function adoptTerminalStyles() {
    const sheet = new CSSStyleSheet();
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    const copy = () => sheet.replaceSync(
      Array.from(document.querySelectorAll("style"), (s) => s.textContent).join("\n"));
    const isStyle = (node) => node && (node.nodeName === "STYLE"
      || (node.parentNode && node.parentNode.nodeName === "STYLE"));
    const observer = new MutationObserver((records) => {
      if (records.some((r) => isStyle(r.target) || Array.from(r.addedNodes).some(isStyle)
                       || Array.from(r.removedNodes).some(isStyle))) {
        copy();
      }
    });
    for (const root of [document.head, el]) {
      observer.observe(root, { childList: true, subtree: true, characterData: true });
    }
    return copy;
  }

  const show = stateShower(state);

  function send(text) {
    if (ws && ws.readyState === WebSocket.OPEN && state.dataset.state === "connected") {
      ws.send(encoder.encode(text));
    }
  }

  async function connect() {
    show("connecting");
    let t;
    try {
      t = await fetchTicket(el, "serial");
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
