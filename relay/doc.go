// Package relay publishes every committed event to the broker, in commit
// order, and records how far it got.
//
// The event store is the outbox. The relay tails it in commit order (store
// cursors never skip a late commit), publishes each event to the topic
// exchange with the event type as routing key, keeps a window of messages in
// flight with publisher confirms, and advances its checkpoint only past
// events the broker confirmed, in order. It never flags rows, so an event is
// written once.
//
// Exactly one relay publishes each partition: relays claim a lease in the
// store, on the database clock, and a standby takes over when the holder
// stops renewing it. The checkpoint is fenced by the lease: a relay that lost
// its lease cannot move the checkpoint, and stops.
package relay
