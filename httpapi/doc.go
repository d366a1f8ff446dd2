// Package httpapi is the HTTP API of `eventbus serve`: it lets services that
// do not run Go publish events, and lets auditors, operators and tools read
// the event store and the relay's state.
//
// [New] builds the handler from a [Config]; [NewServer] wraps it in an
// http.Server with timeouts set. The handler is a library piece: the command
// that wires it to a store, a broker and the relay lives in cmd/eventbus.
//
// # Routes
//
//	route                                 scope    what
//	POST /v1/events                       publish  one event, or {"events": [...]} atomically
//	GET  /v1/events                       read     a page in commit order, and the next cursor
//	GET  /v1/events/{id}                  read     one event
//	GET  /v1/streams/{subject}            read     one stream's events, in version order
//	GET  /v1/status                       read     the relay's status (wire.Status)
//	POST /v1/replay                       admin    send stored events again, or plan it (dry_run)
//	GET  /v1/parked                       read     the events the relay parked (G9), [] when none
//	POST /v1/parked/retry                 admin    {"event_ids": [...]} or {"all": true}: 202, the leading relay republishes them
//	GET  /v1/dead-letters/{group}         admin    a consumer group's dead letters
//	POST /v1/dead-letters/{group}/requeue admin    move dead letters back to the group's queue
//	GET  /healthz                         open     liveness: the process answers
//	GET  /readyz                          open     readiness: every Config.Ready check passes
//	GET  /metrics                         open     Prometheus metrics
//
// /healthz, /readyz and /metrics stay open so that load balancers and
// Prometheus need no token; they reveal no event data, and /readyz names the
// failing checks without their errors (those go to the log).
//
// The admin routes always exist. When their operation is not configured (its
// func in [Admin] is nil) they answer 501 to an authorised caller, so that a
// client can tell "not enabled on this server" from a typo in the path. A
// replay's dry run only reads the store and always works.
//
// # Replay
//
// POST /v1/replay takes the filters of GET /v1/events (but limit), queue
// (default: the exchange), rate, dry_run and all, either as query
// parameters or as the members of a JSON body with the same names
// ({"type": ["quiz.submitted"], "since": "2026-01-01T00:00:00Z", "queue":
// "badges"}; type is a string or an array, positions are integers, rate a
// number, dry_run and all booleans). Never both: a request with a query
// string and a body is a 400, so that no parameter is silently ignored. A
// body member the route does not know, one given twice, or one of the
// wrong type is a 400 that names it. A request that names no filter is a
// 400 unless it says all=true: replaying the whole store is never an
// accident. Nothing is sent on any 4xx.
//
// # Publishing
//
// The body is one event
//
//	{"type": "quiz.submitted", "data": {...}, "id": "…", "subject": "quiz-42",
//	 "expected_version": 3, "correlation_id": "…", "causation_id": "…", "source": "quiz-service"}
//
// (only type and data are required) or a batch {"events": [ ... ]}, which is
// stored atomically: all or nothing. Unknown fields are rejected, so that a
// misspelt expected_version cannot silently skip the version check. The W3C
// traceparent and tracestate headers become the events' trace context.
//
// The input limits of the event package apply, the same as in the library
// (DESIGN "Input limits"): type 1 to 255 bytes of letters, digits, '_', '-'
// and dots; source a URI-reference (RFC 3986) of at most 255 bytes;
// correlation_id and causation_id at most 255 bytes without control
// characters (and UUIDs); subject at most 512 bytes, not only white space.
// The body must be strict JSON: no object holds a key twice, and no string
// holds a lone surrogate escape such as "\ud800", anywhere in the envelope
// or the data. A violation is a 400 whose field names the place, such as
// "source" or "data.answers[2]" (and event, in a batch); nothing is stored.
//
// POST /v1/events also takes CloudEvents 1.0 as the CloudEvents HTTP
// binding sends them (cloudevents.go): structured mode
// (application/cloudevents+json), batched mode
// (application/cloudevents-batch+json) and binary mode (ce- headers, the
// body the data). The same limits hold; an attribute the bus cannot keep
// (an unknown extension, non-JSON data, dataschema) is a 400, not dropped.
//
// A single event is answered with its stored CloudEvent
// (application/cloudevents+json) and a Location header; a batch with
// {"events": [...]} in the order sent. The status is 201 when at least one
// event was new, and 200 when every event's id was already stored: the body
// then holds the stored originals, so a retry is safe and tells the caller so.
// Event data is written back byte for byte, never re-encoded.
//
// # Reading
//
// GET /v1/events takes after (a cursor token), limit (1 to store.MaxLimit,
// default store.DefaultLimit; anything else is a 400, never silently
// clamped), type (repeated or comma-separated), correlation_id, subject,
// since and until (RFC 3339, or a duration before now such as 15m or 24h,
// as the CLI takes them; since inclusive, until exclusive), and
// from_position and to_position (global positions, both inclusive). Unknown
// parameters are a 400, so that a misspelt filter cannot return everything.
// The answer is {"events": [...], "next": "cursor"}; read on with
// after=next until a page comes back empty.
//
// GET /v1/streams/{subject} takes from (the first version, default 1) and
// limit, and answers {"events": [...], "next_version": n}.
//
// # Errors
//
// Every error is application/problem+json (RFC 9457) with type, title,
// status, detail and instance, plus request_id and, where it helps, field
// (the JSON field at fault) and event (its index in a batch). The type URIs
// (the Problem* constants) are stable: clients switch on them. Details say
// what to change; they never hold secrets, and errors of the store or the
// broker are logged, not returned.
//
// # Bounded answers
//
// Every request is answered within Config.RequestTimeout (default 5 s) of
// its body's arrival: when the store or the broker has not answered by
// then (a server that accepts connections and says nothing), the client
// gets a 503 problem with Retry-After, and the call is cancelled and left
// to end on its own. A POST /v1/events answered so may have stored its
// events: sending them again with the same ids is safe. POST /v1/replay is
// bounded by its progress instead: it answers 503, with the cursor to
// resume from, when no event is confirmed for the request timeout. /readyz
// answers within ReadyTimeout (2 s), counting a check that has not
// answered as failing. A store whose file is damaged
// (store.ErrCorrupt) is a 500 of type store-damaged, with what to do, and
// /readyz reports the store check as "damaged": retrying would not help.
//
// # Authentication
//
// With tokens configured (see [ParseTokens]), every route but the open ones
// needs "Authorization: Bearer <token>". publish allows POST /v1/events, read
// the GETs of events, streams, status and parked events, admin everything. A missing or
// unknown token is a 401, a token without the scope a 403. Tokens are
// compared in constant time against every configured token. With no tokens,
// auth is off; the caller should warn about it at start-up.
package httpapi
