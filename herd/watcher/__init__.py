"""The watcher: what Ganeti's ganeti-watcher does, run every few minutes on every node.

On every node it makes sure the node's daemons run; on the master it also restarts instances
that should run but do not (at most ``MAX_RESTARTS`` times in a row, then it gives up until the
instance is seen running again), reattaches mirrored disks whose peer came back
(``verify-disks``), and archives jobs older than six hours. ``gnt-cluster watcher pause``
stops it for a while (for maintenance), as in Ganeti.
"""

from herd.watcher.run import WatchReport, watch_once

__all__ = ["WatchReport", "watch_once"]
