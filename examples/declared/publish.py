#!/usr/bin/env python3
"""Publish a course.completed event (declared by examples/schemas) to eventbus serve.

Start the server with the schema directory, then run this with Python 3 and
nothing but its standard library:

    EVENTBUS_SCHEMA_DIR=examples/schemas eventbus serve
    python3 examples/declared/publish.py http://127.0.0.1:8080

EVENTBUS_API_TOKEN is sent as the bearer token when set (publish scope).
"""
import json
import os
import sys
import urllib.error
import urllib.request
import uuid


def post(base, body):
    headers = {"Content-Type": "application/json"}
    if os.environ.get("EVENTBUS_API_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["EVENTBUS_API_TOKEN"]
    req = urllib.request.Request(base + "/v1/events", data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.load(res)
    except urllib.error.HTTPError as err:  # 4xx and 5xx carry a problem+json body
        return err.code, json.load(err)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    learner = str(uuid.uuid4())
    event = {
        "id": str(uuid.uuid4()),  # resending the same id stores nothing twice
        "type": "course.completed",
        "dataschema": "urn:edupulse:schema:course.completed:2",  # the version written; default the latest
        "subject": "learner-" + learner,
        "data": {"course_id": str(uuid.uuid4()), "learner_id": learner, "grade": 87,
                 "modules": [{"module_id": "intro", "score": 90}]},
    }
    status, answer = post(base, event)
    print(status, answer.get("dataschema"), json.dumps(answer.get("data"), sort_keys=True))

    event["id"], event["data"]["grade"] = str(uuid.uuid4()), 120  # breaks "maximum": 100
    status, problem = post(base, event)
    print(status, problem["detail"])
    for e in problem.get("errors", []):
        print("  ", e["path"], e["rule"], e["message"])


if __name__ == "__main__":
    main()
