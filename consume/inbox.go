package consume

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/store"
)

// Inbox is an event store's inbox, adapted for the consumer by NewInbox.
// The consumer uses it to handle each event once per group.
type Inbox interface {
	// txType names the inbox's transaction type, for errors.
	txType() string
	markHandled(ctx context.Context, group string, id uuid.UUID) error
	handled(ctx context.Context, group string, id uuid.UUID) (bool, error)
}

// NewInbox adapts a store's inbox for Config.Inbox. TTx is the store's
// transaction type, which OnTx handlers receive:
//
//	Inbox: consume.NewInbox[pgx.Tx](pgStore)
//
// A service's inbox (service.Service.Inbox) has the transaction type
// service.Tx, whichever its store.
func NewInbox[TTx any](in store.Inbox[TTx]) Inbox {
	if in == nil {
		return nil
	}
	return storeInbox[TTx]{in}
}

// storeInbox is the one implementation of Inbox. Transactional routes of
// the same TTx recognise it by a type assertion and call its HandleOnce
// with their handler typed: the transaction is never passed as an any.
type storeInbox[TTx any] struct{ in store.Inbox[TTx] }

func (s storeInbox[TTx]) txType() string { return fmt.Sprintf("%T", (*TTx)(nil))[1:] }

func (s storeInbox[TTx]) markHandled(ctx context.Context, group string, id uuid.UUID) error {
	_, err := s.in.MarkHandled(ctx, group, id)
	return err
}

func (s storeInbox[TTx]) handled(ctx context.Context, group string, id uuid.UUID) (bool, error) {
	return s.in.Handled(ctx, group, id)
}
