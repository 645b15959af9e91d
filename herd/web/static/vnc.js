// The graphical console page: noVNC (vendored ES modules) over a WebSocket that herd-rapi
// relays to QEMU's VNC server through the primary node's noded (herd/web/consoles.py). The
// one-time ticket goes first on the socket; after the server's "ok" the socket is handed to
// noVNC's RFB as an open channel. noded has done the guest's VNC security (password, TLS) and
// offers noVNC none. A VNC session cannot survive a migration: when the socket
// closes the page starts a new session (new ticket) a few times before giving up.
import RFB from "./vendor/novnc/core/rfb.js";
import { fetchTicket, stateShower } from "./console-session.js";

const screen = document.getElementById("screen");
const state = document.getElementById("console-state");
let rfb = null;
let attempts = 0;
// why noded could not authenticate to the guest's VNC server (password file, TLS), as it told
// noVNC in RFB terms: shown, and not retried (another attempt would fail the same way)
let refused = null;

const show = stateShower(state);

async function connect() {
  show("connecting");
  attempts += 1;
  let t;
  try {
    t = await fetchTicket(screen, "vnc");
  } catch (err) {
    show("closed", "refused: " + err.message);
    return;
  }
  const ws = new WebSocket("wss://" + location.host + screen.dataset.wsPath);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(t);
  ws.onclose = (event) => {
    if (refused === null) show("closed", "closed" + (event.reason ? ": " + event.reason : ""));
  };
  ws.onmessage = (event) => {
    if (event.data !== "ok") return;
    rfb = new RFB(screen, ws, { shared: true });
    rfb.scaleViewport = true;
    rfb.addEventListener("connect", () => {
      attempts = 0;
      show("connected");
      screen.dataset.rfb = "connected"; // the RFB handshake is done (for the tests)
    });
    rfb.addEventListener("securityfailure", (e) => {
      refused = e.detail.reason || "security negotiation failed";
      screen.dataset.rfb = "refused";
      show("closed", "refused: " + refused);
    });
    rfb.addEventListener("disconnect", (e) => {
      if (refused !== null) return;
      screen.dataset.rfb = "disconnected";
      show("closed", e.detail.clean ? "closed" : "connection lost");
      if (attempts < 3) setTimeout(connect, 1000 * attempts);
    });
    rfb.addEventListener("desktopname", (e) => { screen.title = e.detail.name; });
  };
}

document.getElementById("send-cad").addEventListener("click", () => {
  if (rfb) rfb.sendCtrlAltDel();
});
connect();
