package event

import (
	"context"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
)

type causeKey struct{}
type correlationKey struct{}

type cause struct {
	id, correlation uuid.UUID
}

// WithCause returns a context that marks env as the event being handled.
// Events dispatched with it get env.ID as their causation ID and env's
// correlation ID, so a chain of reactions can be followed in the store.
func WithCause(ctx context.Context, env Envelope) context.Context {
	return context.WithValue(ctx, causeKey{}, cause{id: env.ID, correlation: env.CorrelationID})
}

// CauseFrom returns the ID of the event being handled in ctx, if any.
func CauseFrom(ctx context.Context) (uuid.UUID, bool) {
	c, ok := ctx.Value(causeKey{}).(cause)
	return c.id, ok
}

// WithCorrelationID returns a context whose dispatched events carry id as
// their correlation ID, unless a draft names its own.
func WithCorrelationID(ctx context.Context, id uuid.UUID) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationIDFrom returns the correlation ID in ctx: the one set with
// WithCorrelationID, else the one of the event being handled.
func CorrelationIDFrom(ctx context.Context) (uuid.UUID, bool) {
	if id, ok := ctx.Value(correlationKey{}).(uuid.UUID); ok && id != uuid.Nil {
		return id, true
	}
	if c, ok := ctx.Value(causeKey{}).(cause); ok && c.correlation != uuid.Nil {
		return c.correlation, true
	}
	return uuid.Nil, false
}

var traceContext propagation.TraceContext

// TraceContextFrom returns the W3C traceparent and tracestate of the span in
// ctx, or empty strings when ctx holds no valid span context.
func TraceContextFrom(ctx context.Context) (traceParent, traceState string) {
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier.Get("traceparent"), carrier.Get("tracestate")
}

// ContextWithTrace returns ctx with the trace context that env carries as the
// remote parent span, so spans started from it continue the producer's trace.
func ContextWithTrace(ctx context.Context, env Envelope) context.Context {
	if env.TraceParent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": env.TraceParent, "tracestate": env.TraceState})
}
