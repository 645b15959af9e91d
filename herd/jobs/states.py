"""Ganeti's job states, in a module of their own: the CLI needs the names, not the queue's
SQLite code (importing herd.jobs.queue cost every gnt-* command about 15 ms)."""

QUEUED, WAITING, RUNNING = "queued", "waiting", "running"
SUCCESS, ERROR, CANCELING, CANCELED = "success", "error", "canceling", "canceled"
PENDING_STATES = (QUEUED, WAITING, RUNNING, CANCELING)
FINAL_STATES = (SUCCESS, ERROR, CANCELED)
