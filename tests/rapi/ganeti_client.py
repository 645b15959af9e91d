"""Run Ganeti's own RAPI client (Debian's python3-ganeti-rapi) against a server.

Executed by the system python3 (the client needs pycurl and simplejson from Debian), inside
the node's network namespace. Reads a JSON object from stdin:
``{"host", "port", "user", "password", "calls": [[method, args, kwargs], ...]}`` and prints
one JSON list with ``{"ok": result}`` or ``{"error": message, "code": http_code}`` per call.
The pseudo-method ``WaitJob`` (job id) waits for a job with the client's WaitForJobChange loop,
the way Ganeti's tools do, and returns the final status and every log message it saw.
"""

import json
import sys

from ganeti.rapi import client as rapi


def wait_job(cl, job_id):
    fields = ["status"]
    prev_info, prev_serial, messages = None, None, []
    for _ in range(600):
        result = cl.WaitForJobChange(job_id, fields, prev_info, prev_serial)
        if result is None:
            continue
        prev_info = result["job_info"]
        for serial, _ts, _kind, message in result["log_entries"]:
            prev_serial = max(prev_serial or 0, serial)
            messages.append(message)
        if prev_info[0] in rapi.JOB_STATUS_FINALIZED:
            return {"status": prev_info[0], "log": messages}
    raise RuntimeError(f"job {job_id} did not finish")


def main():
    request = json.load(sys.stdin)
    cl = rapi.GanetiRapiClient(request["host"], port=request.get("port", 5080),
                               username=request.get("user"), password=request.get("password"))
    out = []
    for method, args, kwargs in request["calls"]:
        try:
            if method == "WaitJob":
                value = wait_job(cl, *args)
            else:
                value = getattr(cl, method)(*args, **kwargs)
            out.append({"ok": value})
        except rapi.GanetiApiError as err:
            out.append({"error": str(err), "code": err.code})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
