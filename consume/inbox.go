package consume

import (
	"context"
	"reflect"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

// Inbox is an event store's inbox, adapted for the consumer by NewInbox.
// The consumer uses it to handle each event once per group.
type Inbox interface {
	txType() reflect.Type
	handleOnce(ctx context.Context, group string, id uuid.UUID, fn func(ctx context.Context, tx any) error) (handled bool, err error)
	markHandled(ctx context.Context, group string, id uuid.UUID) error
	handled(ctx context.Context, group string, id uuid.UUID) (bool, error)
}

// NewInbox adapts a store's inbox for Config.Inbox. TTx is the store's
// transaction type, which OnTx handlers receive:
//
//	Inbox: consume.NewInbox[pgx.Tx](pgStore)
func NewInbox[TTx any](in store.Inbox[TTx]) Inbox {
	if in == nil {
		return nil
	}
	return storeInbox[TTx]{in}
}

type storeInbox[TTx any] struct{ in store.Inbox[TTx] }

func (s storeInbox[TTx]) txType() reflect.Type { return reflect.TypeFor[TTx]() }

func (s storeInbox[TTx]) handleOnce(ctx context.Context, group string, id uuid.UUID, fn func(context.Context, any) error) (bool, error) {
	return s.in.HandleOnce(ctx, group, id, func(ctx context.Context, tx TTx) error { return fn(ctx, tx) })
}

func (s storeInbox[TTx]) markHandled(ctx context.Context, group string, id uuid.UUID) error {
	_, err := s.in.MarkHandled(ctx, group, id)
	return err
}

func (s storeInbox[TTx]) handled(ctx context.Context, group string, id uuid.UUID) (bool, error) {
	return s.in.Handled(ctx, group, id)
}
