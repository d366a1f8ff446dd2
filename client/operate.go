package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
)

// Status reads the relay's state (GET /v1/status, read scope). An
// unhealthy relay is a status with Healthy false, not an error.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/status", answer: decodeInto(&st), what: "a relay status"})
	return st, err
}

// Replay sends the events req selects again, to req.Queue or the
// server's exchange (POST /v1/replay, admin scope), and answers once it is
// done (bounded by WithReplayTimeout). A request that names no filter is
// refused unless req.All is set. When the replay stops early, the *Error
// (ErrUnavailable) carries in Resume the cursor to pass as req.After to go
// on. req.DryRun is ignored: use PlanReplay.
func (c *Client) Replay(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	req.DryRun = false
	req.Stored = req.Stored || c.stored
	var res ReplayResult
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/replay", body: req, timeout: c.replayTimeout,
		answer: decodeInto(&res), what: "a replay result"})
	return res, err
}

// PlanReplay says what Replay would send, and sends nothing: the number
// of events and the first of them (POST /v1/replay with dry_run, admin
// scope).
func (c *Client) PlanReplay(ctx context.Context, req ReplayRequest) (ReplayPlan, error) {
	req.DryRun = true
	req.Stored = req.Stored || c.stored
	var plan ReplayPlan
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/replay", body: req,
		answer: decodeInto(&plan), what: "a replay plan"})
	return plan, err
}

// DeadLetters lists up to limit (0: the server's default) of a consumer
// group's dead letters, leaving them in place (GET
// /v1/dead-letters/{group}, admin scope).
func (c *Client) DeadLetters(ctx context.Context, group string, limit int) ([]DeadLetter, error) {
	q := url.Values{}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var list wire.DeadLetterList
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/dead-letters/" + url.PathEscape(group), query: q,
		answer: decodeInto(&list), what: "a list of dead letters"})
	return list.DeadLetters, err
}

// Requeue moves a group's dead letters back to its queue: those whose
// event or message IDs ids lists, or every one when ids is empty (POST
// /v1/dead-letters/{group}/requeue, admin scope). It returns how many it
// moved.
func (c *Client) Requeue(ctx context.Context, group string, ids []string) (int, error) {
	var body any
	if len(ids) > 0 {
		body = wire.RequeueRequest{IDs: ids}
	}
	var res wire.RequeueResult
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/dead-letters/" + url.PathEscape(group) + "/requeue", body: body,
		answer: decodeInto(&res), what: "a requeue result"})
	return res.Requeued, err
}

// Parked lists the events the relay parked, by position (GET /v1/parked,
// read scope).
func (c *Client) Parked(ctx context.Context) ([]Parked, error) {
	var list []Parked
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/parked", answer: decodeInto(&list), what: "a list of parked events"})
	return list, err
}

// RetryParked marks the parked events with ids, and those parked before
// them in their streams, for the leading relay to publish again (POST
// /v1/parked/retry, admin scope). It returns at once; Parked shows the
// outcome. An error matching ErrNotFound when none of them is parked.
func (c *Client) RetryParked(ctx context.Context, ids []uuid.UUID) (RetryResult, error) {
	if len(ids) == 0 {
		return RetryResult{}, fmt.Errorf("eventbus client: RetryParked: %w: give at least one event ID, or use RetryAllParked", ErrInvalidRequest)
	}
	return c.retryParked(ctx, wire.RetryRequest{EventIDs: ids})
}

// RetryAllParked marks every parked event for retry; see RetryParked.
func (c *Client) RetryAllParked(ctx context.Context) (RetryResult, error) {
	return c.retryParked(ctx, wire.RetryRequest{All: true})
}

func (c *Client) retryParked(ctx context.Context, req wire.RetryRequest) (RetryResult, error) {
	var res RetryResult
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/parked/retry", body: req,
		answer: decodeInto(&res), what: "a retry result"})
	return res, err
}

// Erase erases a data subject (POST /v1/data-subjects/{id}/erase, admin
// scope): the server destroys the subject's key and records a
// datasubject.erased event naming the token; from then on the subject's
// personal fields read as null everywhere. Erasing an unknown or erased
// subject succeeds.
func (c *Client) Erase(ctx context.Context, dataSubject string) (Erasure, error) {
	if dataSubject == "" {
		return Erasure{}, fmt.Errorf("eventbus client: Erase: %w: give the data subject's id", ErrInvalidRequest)
	}
	var res Erasure
	_, err := c.do(ctx, call{method: http.MethodPost, path: "/v1/data-subjects/" + url.PathEscape(dataSubject) + "/erase",
		answer: decodeInto(&res), what: "an erasure"})
	return res, err
}

// Healthz asks whether the server's process answers (GET /healthz, no
// token needed).
func (c *Client) Healthz(ctx context.Context) error {
	var h wire.Health
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/healthz", answer: decodeInto(&h), what: "a health answer"})
	return err
}

// Readyz asks whether the server can reach its store and broker (GET
// /readyz, no token needed). When it cannot, the error matches
// ErrUnavailable and its *Error's Checks names the failing checks.
func (c *Client) Readyz(ctx context.Context) (Ready, error) {
	var r Ready
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/readyz", answer: decodeInto(&r), what: "a readiness answer"})
	return r, err
}

// Schemas lists every event type the server knows, with its origin
// ("go" or "file"), its versions and their JSON Schemas (GET /v1/schemas,
// read scope).
func (c *Client) Schemas(ctx context.Context) ([]event.TypeInfo, error) {
	var out wire.Schemas
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/v1/schemas", answer: decodeInto(&out), what: "a list of types"})
	return out.Types, err
}
