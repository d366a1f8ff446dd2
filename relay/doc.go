// Package relay publishes every committed event to the broker, in commit
// order, and records how far it got.
//
// The event store is the outbox. The relay tails it in commit order (store
// cursors never skip a late commit), publishes each event to the topic
// exchange with the event type as routing key, keeps a window of messages in
// flight with publisher confirms, and advances its checkpoint only past
// events the broker confirmed, in order. It never flags rows, so an event is
// written once. The window never holds two events of one stream: a broker
// can nack a message and ack a later one, which would put a stream out of
// order (broker.Outgoing.Stream); an event of a stream with one in flight
// waits for its confirm while other streams go ahead.
//
// Exactly one relay publishes each partition: relays claim a lease in the
// store, on the database clock, and a standby takes over when the holder
// stops renewing it. The checkpoint is fenced by the lease: a relay that lost
// its lease cannot move the checkpoint, and stops.
//
// One event never stops the relay (G9). An event the broker refuses in a way
// that sending it again cannot fix is parked (see park.go and
// store.Parking), the later events of its stream wait parked behind it, and
// the checkpoint moves past them; a broker that is down, blocked or full is
// retried with backoff instead. Operators list parked events and ask for a
// retry (ListParked, RequestRetry); the leading relay carries it out, in
// order.
package relay
