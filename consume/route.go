package consume

import (
	"context"
	"errors"
	"fmt"
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
	typ string // the event type it handles; "" for every type
	// tx is set on OnTx and OnAnyTx routes: it tells whether an inbox's
	// transactions are of the route's type, and names that type.
	tx *txRoute
	// prepare decodes env for the handler and returns the call that runs
	// it. A prepare error is permanent: the payload does not fit the
	// handler's type.
	prepare func(env event.Envelope) (call, error)
}

// txRoute is what a route that runs in the inbox's transaction adds.
type txRoute struct {
	txType string           // the transaction type's name, for errors
	fits   func(Inbox) bool // whether the inbox's transactions are txType
}

// call is a handler bound to the event it handles. A plain route's runs
// outside any transaction; a transactional route's in the inbox's
// (runOnce), which the router has checked is of the route's type.
type call struct {
	run     func(ctx context.Context, mw []Middleware) error
	runOnce func(ctx context.Context, in Inbox, group string, mw []Middleware) (handled bool, err error)
}

// plainCall is the call of a handler that runs outside any transaction.
func plainCall(h Handler, env event.Envelope) call {
	return call{run: func(ctx context.Context, mw []Middleware) error { return wrap(h, mw)(ctx, env) }}
}

// txRouteOf describes a route whose handler takes a TTx.
func txRouteOf[TTx any]() *txRoute {
	return &txRoute{
		// The name of the type behind the pointer: pgx.Tx, *sql.Tx.
		txType: fmt.Sprintf("%T", (*TTx)(nil))[1:],
		fits:   func(in Inbox) bool { _, ok := in.(storeInbox[TTx]); return ok },
	}
}

// txCall is the call of a handler that runs in the inbox's transaction, a
// TTx: fn gets the transaction the inbox's HandleOnce opened.
func txCall[TTx any](env event.Envelope, fn func(ctx context.Context, tx TTx, env event.Envelope) error) call {
	return call{runOnce: func(ctx context.Context, in Inbox, group string, mw []Middleware) (bool, error) {
		inbox, ok := in.(storeInbox[TTx])
		if !ok {
			// newRouter refuses the mismatch: this is a bug, not input.
			return false, fmt.Errorf("%w: the inbox's transactions are not the route's", ErrInvalidConfig)
		}
		return inbox.in.HandleOnce(ctx, group, env.ID, func(ctx context.Context, tx TTx) error {
			return wrap(func(ctx context.Context, env event.Envelope) error { return fn(ctx, tx, env) }, mw)(ctx, env)
		})
	}}
}

func (r *route) route() *route { return r }

// On routes the events of payload type T to fn, decoded with
// event.DecodeEnvelopeAs. An event whose data does not decode into T is
// dead-lettered at once. An erased event (env.Erased) reaches fn with the
// personal fields of T at their zero value: check env.Erased before using
// them.
//
// With an Inbox the consumer skips events it recorded as handled, and
// records each event once fn succeeds: a crash in between runs fn again
// (at-least-once effect). Use OnTx for an effect that happens exactly once.
func On[T event.Payload](fn func(ctx context.Context, env event.Envelope, payload T) error) Route {
	var zero T
	return &route{typ: zero.EventType(), prepare: func(env event.Envelope) (call, error) {
		p, err := decodePayload[T](env)
		if err != nil {
			return call{}, err
		}
		return plainCall(func(ctx context.Context, env event.Envelope) error { return fn(ctx, env, p) }, env), nil
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
	return &route{typ: zero.EventType(), tx: txRouteOf[TTx](), prepare: func(env event.Envelope) (call, error) {
		p, err := decodePayload[T](env)
		if err != nil {
			return call{}, err
		}
		return txCall(env, func(ctx context.Context, tx TTx, env event.Envelope) error { return fn(ctx, tx, env, p) }), nil
	}}
}

// OnAny routes the events that no typed route handles to fn, raw. It is
// the route for types this build does not know: their data is exactly what
// the producer sent.
func OnAny(fn func(ctx context.Context, env event.Envelope) error) Route {
	return &route{prepare: func(env event.Envelope) (call, error) { return plainCall(fn, env), nil }}
}

// OnAnyTx is OnAny inside the Inbox's transaction, as OnTx.
func OnAnyTx[TTx any](fn func(ctx context.Context, tx TTx, env event.Envelope) error) Route {
	return &route{tx: txRouteOf[TTx](), prepare: func(env event.Envelope) (call, error) { return txCall(env, fn), nil }}
}

func decodePayload[T event.Payload](env event.Envelope) (T, error) {
	p, err := event.DecodeEnvelopeAs[T](env)
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
		if in.tx != nil {
			if inbox == nil {
				return rt, fmt.Errorf("%w: a transactional route (OnTx, OnAnyTx) needs Config.Inbox", ErrInvalidConfig)
			}
			if !in.tx.fits(inbox) {
				return rt, fmt.Errorf("%w: route for %q takes a %s, but the inbox's transactions are %s", ErrInvalidConfig, describeType(in.typ), in.tx.txType, inbox.txType())
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
