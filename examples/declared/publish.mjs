// Publish a forum.post.created event (declared by examples/schemas) as a
// CloudEvent from Node 18 or later, without any package:
//
//   EVENTBUS_SCHEMA_DIR=examples/schemas eventbus serve
//   node examples/declared/publish.mjs http://127.0.0.1:8080
import { randomUUID } from "node:crypto";

const base = process.argv[2] ?? "http://127.0.0.1:8080";
const headers = { "Content-Type": "application/cloudevents+json" };
if (process.env.EVENTBUS_API_TOKEN) headers.Authorization = `Bearer ${process.env.EVENTBUS_API_TOKEN}`;
const author = randomUUID();
const res = await fetch(`${base}/v1/events`, {
  method: "POST",
  headers,
  body: JSON.stringify({
    specversion: "1.0", id: randomUUID(), source: "/forum-service", type: "forum.post.created",
    subject: `thread-${author}`, dataschema: "urn:edupulse:schema:forum.post.created:1",
    data: { post_id: randomUUID(), thread_id: randomUUID(), author_id: author, body: "Hello, course!", tags: ["intro"] },
  }),
  signal: AbortSignal.timeout(10_000),
});
const answer = await res.json();
console.log(res.status, res.ok ? answer.dataschema : answer.detail);
