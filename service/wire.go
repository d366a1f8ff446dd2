package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/broker"
	"github.com/edupulse/eventbus/consume"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/relay"
	"github.com/edupulse/eventbus/replay"
	"github.com/edupulse/eventbus/store"
)

// The HTTP API speaks in the wire's types (package httpapi/wire), which
// know nothing of the relay, the consumers or replays; the functions below
// adapt the domain's types to them. The service wires them into
// httpapi.Config; tests and programs that build the API themselves use
// them the same way.

// WireStatus is a relay status as GET /v1/status answers it.
func WireStatus(st relay.Status) wire.Status {
	out := wire.Status{Relay: st.Relay, Backlog: st.Backlog, Lag: wire.Seconds(st.Lag), Events: st.Events,
		Head: st.Head, HeadPosition: st.HeadPosition,
		HeldBack: st.HeldBack, OldestTxAge: wire.Seconds(st.OldestTxAge), Parked: st.Parked, Healthy: st.Healthy,
		Problems: st.Problems, PartitionCount: st.PartitionCount, Partitions: make([]wire.PartitionState, len(st.Partitions)),
		Processes: make([]wire.RelayProcess, len(st.Processes))}
	for i, p := range st.Partitions {
		out.Partitions[i] = wire.PartitionState{Partition: p.Partition, Leader: p.Leader, LeaseUntil: p.LeaseUntil,
			Checkpoint: p.Checkpoint, CheckpointPosition: p.Position, UpdatedAt: p.UpdatedAt,
			Backlog: p.Backlog, Lag: wire.Seconds(p.Lag)}
	}
	for i, p := range st.Processes {
		out.Processes[i] = wire.RelayProcess{Holder: p.Holder, Partitions: p.Partitions, SeenUntil: p.SeenUntil}
	}
	return out
}

// WireParked is a list of parked events as GET /v1/parked answers it: [],
// not null, when there are none.
func WireParked(list []store.ParkedEvent) []wire.Parked {
	out := make([]wire.Parked, len(list))
	for i, p := range list {
		out[i] = wire.Parked{Relay: p.Relay, Partition: p.Number, EventID: p.EventID, Position: p.Position,
			Type: p.Type, Stream: p.Stream, StreamVersion: p.StreamVersion, Reason: p.Reason, Attempts: p.Attempts,
			ParkedAt: p.ParkedAt, LastAttemptAt: p.LastAttemptAt, RetryRequested: p.RetryRequested}
	}
	return out
}

// WireDeadLetter is a dead letter as GET /v1/dead-letters/{group} answers
// it: its event when it carries one, else its body as JSON or in base64.
func WireDeadLetter(dl consume.DeadLetter) wire.DeadLetter {
	out := wire.DeadLetter{MessageID: dl.Message.MessageID, Type: dl.Message.Type, Queue: dl.Queue,
		Attempts: dl.Attempts, Reason: dl.Reason, FailedAt: dl.FailedAt}
	switch {
	case dl.Envelope != nil:
		out.Event = dl.Envelope
	case len(dl.Message.Body) > 0 && json.Valid(dl.Message.Body):
		out.Body = dl.Message.Body
	default:
		out.BodyBase64 = dl.Message.Body
		if out.BodyBase64 == nil {
			out.BodyBase64 = []byte{}
		}
	}
	return out
}

// HTTPStatus returns the Config.Status of the HTTP API: relay's status in
// st, unhealthy past maxLag (when positive).
func HTTPStatus(st store.Store, relayName string, maxLag time.Duration) func(context.Context) (wire.Status, error) {
	return func(ctx context.Context) (wire.Status, error) {
		s, err := relay.ReadStatus(ctx, st, relayName, maxLag)
		return WireStatus(s), err
	}
}

// HTTPParked returns the Config.Parked of the HTTP API: relay's parked
// events in st.
func HTTPParked(st store.Parking, relayName string) func(context.Context) ([]wire.Parked, error) {
	return func(ctx context.Context) ([]wire.Parked, error) {
		list, err := relay.ListParked(ctx, st, relayName)
		return WireParked(list), err
	}
}

// HTTPAdmin returns the admin operations of the HTTP API over st and b:
// replays to b (exchange, when the request names no queue), the dead
// letters of b's consumer groups, and retries of relay's parked events.
func HTTPAdmin(st store.Store, b broker.Broker, relayName, exchange string) httpapi.Admin {
	return httpapi.Admin{
		Exchange: exchange,
		Replay: func(ctx context.Context, req httpapi.ReplayRequest) (wire.ReplayResult, error) {
			opts := replay.Options{Filter: req.Filter, Target: replay.Target{Queue: req.Queue, Exchange: req.Exchange}, Rate: req.Rate}
			if req.Progress != nil {
				opts.Progress = func(p replay.Progress) {
					req.Progress(wire.ReplayResult{Published: p.Published, Total: p.Total, Resume: p.Resume.String()})
				}
			}
			res, err := replay.Run(ctx, st, b, opts)
			return wire.ReplayResult{ID: res.ID, Published: res.Published, Total: res.Total, Resume: res.Resume.String(), Complete: res.Complete}, err
		},
		DeadLetters: func(ctx context.Context, group string, limit int) ([]wire.DeadLetter, error) {
			letters, err := consume.DeadLetters(ctx, b, group, limit)
			out := make([]wire.DeadLetter, len(letters))
			for i, dl := range letters {
				out[i] = WireDeadLetter(dl)
			}
			return out, err
		},
		Requeue: func(ctx context.Context, group string, ids []string) (int, error) {
			return consume.Requeue(ctx, b, group, PickDeadLetters(ids))
		},
		RetryParked: func(ctx context.Context, ids []uuid.UUID, all bool) (wire.RetryResult, error) {
			res, err := relay.RequestRetry(ctx, st, relayName, ids, all)
			return wire.RetryResult{Requested: WireParked(res.Requested), NotParked: res.NotParked}, err
		},
	}
}

// PickDeadLetters returns the consume.Requeue selector of the dead letters
// whose message ID or event ID ids lists; nil, which requeues every one,
// when ids is empty.
func PickDeadLetters(ids []string) func(consume.DeadLetter) bool {
	if len(ids) == 0 {
		return nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	return func(dl consume.DeadLetter) bool {
		return want[dl.Message.MessageID] || (dl.Envelope != nil && want[dl.Envelope.ID.String()])
	}
}
