"""RAPI v2: Ganeti's remote API over HTTPS, served by herd-rapi on the master.

``app`` builds the ASGI application and routes requests; ``auth`` reads the users file and checks
HTTP Basic credentials; ``master`` talks to masterd; ``convert`` gives Herd's data Ganeti's
shapes; ``resources`` holds one module per area (cluster, instances, nodes, groups, jobs, query,
tags); ``errors`` builds Ganeti's error bodies; ``openapi`` describes the API.
"""
