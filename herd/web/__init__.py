"""The web manager: server-rendered pages under /ui/ on herd-rapi's port (DESIGN.md section 11).

Modules: :mod:`sessions` (log-in sessions, CSRF tokens, idle expiry), :mod:`listing` (sort,
filter, paginate rows of Herd's own query layer), :mod:`app` (routes and pages). Who may do
what is :mod:`herd.objects.access`, shared with the CLI that sets grants.
"""
