package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
)

// maxRetryIDs bounds the event IDs one retry request may name.
const maxRetryIDs = 10000

// listParked answers GET /v1/parked: the relay's parked events, by
// position, as a JSON array ([] when none).
func (a *api) listParked(w http.ResponseWriter, r *http.Request) {
	if a.parked == nil {
		writeProblem(w, r, notConfigured("the parked-event list"))
		return
	}
	if _, p := parseQuery(r.URL.RawQuery, nil, nil); p != nil {
		writeProblem(w, r, p)
		return
	}
	list, err := a.parked(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if list == nil {
		list = []wire.Parked{}
	}
	a.writeValue(w, r, http.StatusOK, list)
}

// retryRequest is the body of POST /v1/parked/retry: exactly one of
// {"event_ids": [...]} and {"all": true}.
type retryRequest struct {
	ids []uuid.UUID
	all bool
}

const retryBodyHelp = `the body must be {"event_ids": ["<event id>", ...]} or {"all": true}`

// parseRetry parses the body of POST /v1/parked/retry. A problem has status
// 400 and names the field at fault.
func parseRetry(body []byte) (retryRequest, *Problem) {
	var req retryRequest
	var fields map[string]json.RawMessage
	if len(bytes.TrimSpace(body)) == 0 {
		return req, newProblem(400, ProblemMalformedRequest, "the body is empty; "+retryBodyHelp).atField("event_ids")
	}
	// Strict JSON, as every body the API takes: json.Unmarshal would read a
	// repeated key last-one-wins.
	if err := event.CheckJSON(body, event.MaxDataDepth); err != nil {
		var fe *event.FieldError
		if errors.As(err, &fe) && fe.Field != "" {
			return req, newProblem(400, ProblemMalformedRequest, fmt.Sprintf("%s %s; %s", fe.Field, fe.Reason, retryBodyHelp)).atField(fe.Field)
		}
		return req, newProblem(400, ProblemMalformedRequest, fmt.Sprintf("the body is not valid JSON: %v; %s", err, retryBodyHelp))
	}
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return req, newProblem(400, ProblemMalformedRequest, "the body is not a JSON object; "+retryBodyHelp)
	}
	var unknown []string
	for k := range fields {
		if k != "event_ids" && k != "all" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return req, newProblem(400, ProblemMalformedRequest,
			fmt.Sprintf("unknown field %s; %s", clip(unknown[0]), retryBodyHelp)).atField(unknown[0])
	}
	rawIDs, hasIDs := fields["event_ids"]
	rawAll, hasAll := fields["all"]
	switch {
	case hasIDs && hasAll:
		return req, newProblem(400, ProblemMalformedRequest, "give event_ids or all, not both").atField("all")
	case hasAll:
		if err := json.Unmarshal(rawAll, &req.all); err != nil || !req.all {
			return req, newProblem(400, ProblemMalformedRequest,
				fmt.Sprintf("all must be true, not %s; to retry some events, give event_ids", clip(string(rawAll)))).atField("all")
		}
		return req, nil
	case !hasIDs:
		return req, newProblem(400, ProblemMalformedRequest, retryBodyHelp).atField("event_ids")
	}
	var texts []string
	if err := json.Unmarshal(rawIDs, &texts); err != nil || len(texts) == 0 {
		return req, newProblem(400, ProblemMalformedRequest, "event_ids must be a non-empty array of event IDs (UUID strings)").atField("event_ids")
	}
	if len(texts) > maxRetryIDs {
		return req, newProblem(400, ProblemMalformedRequest,
			fmt.Sprintf("event_ids holds %d IDs; give at most %d, or all", len(texts), maxRetryIDs)).atField("event_ids")
	}
	for i, t := range texts {
		id, err := uuid.Parse(t)
		if err != nil || strings.ContainsAny(t, "{}:") || len(t) != 36 {
			return req, newProblem(400, ProblemMalformedRequest,
				fmt.Sprintf("event_ids[%d] %s is not an event id: a UUID such as 0190d1e2-7c4a-7b3e-8f00-1234567890ab", i, clip(t))).atField("event_ids")
		}
		req.ids = append(req.ids, id)
	}
	return req, nil
}

// retryParked answers POST /v1/parked/retry: it marks the parked events for
// retry and answers 202 with them; the relay leading their partition
// publishes them, in order, within a second or so (GET /v1/parked shows the
// outcome). It does not publish them itself: only the leading relay knows
// where each stream stands, and keeps its order.
func (a *api) retryParked(w http.ResponseWriter, r *http.Request) {
	if a.admin.RetryParked == nil {
		writeProblem(w, r, notConfigured("retrying parked events"))
		return
	}
	body, p := a.readBody(r)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	if len(body) > 0 {
		if p := checkJSONBody(r); p != nil {
			writeProblem(w, r, p)
			return
		}
	}
	req, p := parseRetry(body)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	res, err := a.admin.RetryParked(r.Context(), req.ids, req.all)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(res.Requested) == 0 && len(res.NotParked) > 0 {
		writeProblem(w, r, newProblem(http.StatusNotFound, ProblemNotFound,
			fmt.Sprintf("none of the %d events is parked (published already, or never parked); GET /v1/parked lists those that are", len(res.NotParked))).atField("event_ids"))
		return
	}
	a.writeValue(w, r, http.StatusAccepted, res)
}
