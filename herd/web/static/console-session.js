// What the two console pages (serial: console.js, graphical: vnc.js) share: the state badge
// beside the title, and the one-time ticket a console's WebSocket presents first. The ticket
// is fetched with the page's CSRF token (a POST under the session's cookie), so a page of
// another origin cannot open a console in the user's name; one ticket per socket, as the
// server accepts each once (herd/web/consoles.py).

/** A function that shows a state ("connecting", "connected", "closed", ...) in `badge`:
 * `data-state` for the style and the browser tests, the text for the user. */
export function stateShower(badge) {
  return (name, text) => {
    badge.dataset.state = name;
    badge.textContent = text || name;
  };
}

/** A new ticket for the console of `kind` ("serial", "vnc") that `el` describes
 * (`data-ticket-url`, `data-csrf`); the server's error message when it refuses one. */
export async function fetchTicket(el, kind) {
  const answer = await fetch(el.dataset.ticketUrl, {
    method: "POST", credentials: "same-origin",
    headers: { "X-CSRF-Token": el.dataset.csrf,
               "Content-Type": "application/x-www-form-urlencoded" },
    body: "kind=" + encodeURIComponent(kind),
  });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || ("HTTP " + answer.status));
  return body.ticket;
}
