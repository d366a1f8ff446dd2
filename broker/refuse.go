package broker

import (
	"errors"
	"fmt"
)

// ErrRefused reports a message that the broker, or the client library, will
// not take however often it is sent: a property too long for AMQP, or a
// message the broker refused by closing the channel on it (for example over
// its max_message_size). Sending it again cannot succeed; the relay parks
// it (G9). A broker that is down, blocked or full is never ErrRefused.
var ErrRefused = errors.New("broker: message refused")

// MaxShortString is the most bytes an AMQP short string holds: the exchange,
// the routing key and the message properties are short strings.
const MaxShortString = 255

// CheckMessage returns an error wrapping ErrRefused when AMQP cannot carry m
// to exchange with routingKey: a short string over MaxShortString bytes. Both
// brokers check it before they publish, so that one bad message fails alone
// instead of breaking the connection that carries the others.
func CheckMessage(exchange, routingKey string, m Message) error {
	for _, f := range []struct{ name, value string }{
		{"exchange", exchange},
		{"routing key (the event type)", routingKey},
		{"message_id", m.MessageID},
		{"correlation_id", m.CorrelationID},
		{"type", m.Type},
		{"app_id (the event source)", m.AppID},
		{"content_type", m.ContentType},
	} {
		if len(f.value) > MaxShortString {
			return fmt.Errorf("%w: the %s is %d bytes, over the AMQP limit of %d", ErrRefused, f.name, len(f.value), MaxShortString)
		}
	}
	for k := range m.Headers {
		if len(k) > MaxShortString {
			return fmt.Errorf("%w: header name %.40q... is %d bytes, over the AMQP limit of %d", ErrRefused, k, len(k), MaxShortString)
		}
	}
	return nil
}

// ErrSource is implemented by publishers that can say why they stopped:
// once Done is closed, Err returns the cause, wrapping ErrRefused when the
// broker closed the publisher's channel because of one message. Pipeline
// uses it to tell a refused message from a lost connection.
type ErrSource interface {
	Err() error
}
