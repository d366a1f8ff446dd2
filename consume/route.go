package consume

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/edupulse/eventbus/broker/topic"
	"github.com/edupulse/eventbus/event"
)

// Handler handles one event. It is what Middleware wraps.
type Handler func(ctx context.Context, env event.Envelope) error

// Middleware wraps every handler call, for cross-cutting concerns such as
// logging or rate limiting. For OnTx routes it runs inside the transaction.
type Middleware func(next Handler) Handler

// ErrPermanent marks a failure that retrying cannot fix: the message is
// dead-lettered at once. Test with errors.Is.
var ErrPermanent = errors.New("permanent failure")

// Permanent marks err as a failure that retrying cannot fix, such as an
// event that breaks a business rule for good. The consumer dead-letters the
// message at once instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() []error {
	return []error{e.err, ErrPermanent}
}

// Route sends the events of one type, or of every type, to a handler. Build
// routes with On, OnTx, OnAny and OnAnyTx.
type Route interface {
	route() *route
}

// route is what every Route builds.
type route struct {
	typ    string       // the event type it handles; "" for every type
	txType reflect.Type // the transaction type of OnTx routes; nil otherwise
	// prepare decodes env for the handler and returns the call that runs
	// it, in the inbox transaction tx for OnTx routes. A prepare error is
	// permanent: the payload does not fit the handler's type.
	prepare func(env event.Envelope) (func(ctx context.Context, tx any, mw []Middleware) error, error)
}

func (r *route) route() *route { return r }

// On routes the events of payload type T to fn, decoded with
// event.DecodeAs. An event whose data does not decode into T is
// dead-lettered at once.
//
// With an Inbox the consumer skips events it recorded as handled, and
// records each event once fn succeeds: a crash in between runs fn again
// (at-least-once effect). Use OnTx for an effect that happens exactly once.
func On[T event.Payload](fn func(ctx context.Context, env event.Envelope, payload T) error) Route {
	var zero T
	return &route{typ: zero.EventType(), prepare: func(env event.Envelope) (func(context.Context, any, []Middleware) error, error) {
		p, err := decodePayload[T](env)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, _ any, mw []Middleware) error {
			return wrap(func(ctx context.Context, env event.Envelope) error { return fn(ctx, env, p) }, mw)(ctx, env)
		}, nil
	}}
}

// OnTx routes the events of payload type T to fn, which runs inside the
// Inbox's transaction tx: what fn writes in tx commits together with the
// record that the event was handled, so its effect happens exactly once even
// when the broker delivers the event again. Events dispatched through an
// eventbus.Bus in tx with fn's ctx are caused by the handled event.
//
// OnTx needs Config.Inbox, of the same transaction type TTx.
func OnTx[TTx any, T event.Payload](fn func(ctx context.Context, tx TTx, env event.Envelope, payload T) error) Route {
	var zero T
	return &route{typ: zero.EventType(), txType: reflect.TypeFor[TTx](), prepare: func(env event.Envelope) (func(context.Context, any, []Middleware) error, error) {
		p, err := decodePayload[T](env)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, tx any, mw []Middleware) error {
			return wrap(func(ctx context.Context, env event.Envelope) error { return fn(ctx, tx.(TTx), env, p) }, mw)(ctx, env)
		}, nil
	}}
}

// OnAny routes the events that no typed route handles to fn, raw. It is
// the route for types this build does not know: their data is exactly what
// the producer sent.
func OnAny(fn func(ctx context.Context, env event.Envelope) error) Route {
	return &route{prepare: func(env event.Envelope) (func(context.Context, any, []Middleware) error, error) {
		return func(ctx context.Context, _ any, mw []Middleware) error { return wrap(fn, mw)(ctx, env) }, nil
	}}
}

// OnAnyTx is OnAny inside the Inbox's transaction, as OnTx.
func OnAnyTx[TTx any](fn func(ctx context.Context, tx TTx, env event.Envelope) error) Route {
	return &route{txType: reflect.TypeFor[TTx](), prepare: func(env event.Envelope) (func(context.Context, any, []Middleware) error, error) {
		return func(ctx context.Context, tx any, mw []Middleware) error {
			return wrap(func(ctx context.Context, env event.Envelope) error { return fn(ctx, tx.(TTx), env) }, mw)(ctx, env)
		}, nil
	}}
}

func decodePayload[T event.Payload](env event.Envelope) (T, error) {
	p, err := event.DecodeAs[T](env.Data)
	if err != nil {
		return p, fmt.Errorf("decode %s payload of event %s: %w", env.Type, env.ID, err)
	}
	return p, nil
}

// wrap applies middleware to h, the first one outermost.
func wrap(h Handler, mw []Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// router finds the route of an event type.
type router struct {
	byType map[string]*route
	any    *route
}

func newRouter(routes []Route, inbox Inbox) (router, error) {
	rt := router{byType: map[string]*route{}}
	for i, r := range routes {
		if r == nil {
			return rt, fmt.Errorf("%w: route %d is nil", ErrInvalidConfig, i)
		}
		in := r.route()
		if in.txType != nil {
			if inbox == nil {
				return rt, fmt.Errorf("%w: a transactional route (OnTx, OnAnyTx) needs Config.Inbox", ErrInvalidConfig)
			}
			if want := inbox.txType(); in.txType != want {
				return rt, fmt.Errorf("%w: route for %q takes a %v, but the inbox's transactions are %v", ErrInvalidConfig, describeType(in.typ), in.txType, want)
			}
		}
		if in.typ == "" {
			if rt.any != nil {
				return rt, fmt.Errorf("%w: more than one OnAny route", ErrInvalidConfig)
			}
			rt.any = in
			continue
		}
		if err := event.CheckTypeName(in.typ); err != nil {
			return rt, fmt.Errorf("%w: route %d: %w", ErrInvalidConfig, i, err)
		}
		if _, dup := rt.byType[in.typ]; dup {
			return rt, fmt.Errorf("%w: two routes for %q: handle both effects in one handler, or use two groups", ErrInvalidConfig, in.typ)
		}
		rt.byType[in.typ] = in
	}
	if len(rt.byType) == 0 && rt.any == nil {
		return rt, fmt.Errorf("%w: no routes", ErrInvalidConfig)
	}
	return rt, nil
}

func describeType(typ string) string {
	if typ == "" {
		return "any type"
	}
	return typ
}

// match returns the route of typ, or nil when no route handles it.
func (rt router) match(typ string) *route {
	if r, ok := rt.byType[typ]; ok {
		return r
	}
	return rt.any
}

// patterns returns the patterns to bind with when the config names none.
func (rt router) patterns() []string {
	if rt.any != nil {
		return []string{"#"}
	}
	ps := make([]string, 0, len(rt.byType))
	for typ := range rt.byType {
		ps = append(ps, typ)
	}
	sort.Strings(ps)
	return ps
}

// checkReachable fails when a typed route's type matches none of the
// patterns: that handler could never be called, which is surely a mistake.
func (rt router) checkReachable(patterns []string) error {
	for typ := range rt.byType {
		reachable := false
		for _, p := range patterns {
			if topic.Match(p, typ) {
				reachable = true
				break
			}
		}
		if !reachable {
			return fmt.Errorf("%w: the route for %q matches none of the patterns %q", ErrInvalidConfig, typ, patterns)
		}
	}
	return nil
}
