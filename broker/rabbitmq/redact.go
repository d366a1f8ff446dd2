package rabbitmq

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/edupulse/eventbus/internal/connurl"
)

// redactURL returns raw without its password, for errors and logs. A URL
// whose user info is ambiguous, or that does not parse, gets
// connurl.Redact's redaction, which hides everything that could be
// password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || connurl.CheckUserInfo(raw) != nil {
		return connurl.Redact(raw)
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = connurl.Redacted, ""
	}
	return u.String()
}

// newScrubber returns a replacer that removes the given URLs (replaced by
// their redacted form) and their passwords, in every form a text may quote
// them in, from text that other code wrote, such as amqp091's errors, which
// may echo the URL they were given.
func newScrubber(rawURLs []string) *strings.Replacer {
	var pairs []string
	for _, raw := range rawURLs {
		pairs = append(pairs, raw, redactURL(raw))
	}
	// Bare passwords come after the URLs so that a whole URL is replaced
	// by its redacted form before its password alone would be.
	for _, raw := range rawURLs {
		for _, pw := range connurl.Passwords(raw) {
			pairs = append(pairs, pw, connurl.Redacted)
		}
	}
	return strings.NewReplacer(pairs...)
}

// scrubbedError is an error whose text has had secrets removed. It still
// unwraps to the original, so errors.Is and errors.As see through it.
type scrubbedError struct {
	err  error
	text string
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub returns err with every URL and password of b removed from its text.
func (b *Broker) scrub(err error) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{err: err, text: b.scrubber.Replace(err.Error())}
}

// unreachableError says which nodes could not be reached and why. It wraps
// broker.ErrUnavailable and the causes.
type unreachableError struct {
	msg    string
	causes []error
}

func (e *unreachableError) Error() string   { return e.msg }
func (e *unreachableError) Unwrap() []error { return e.causes }

// reason describes briefly why a dial failed: "connection refused", or the
// server's refusal.
func reason(err error, scrubber *strings.Replacer) string {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		return scrubber.Replace(amqpErr.Reason)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Sprintf("cannot resolve host %s", dnsErr.Name)
	}
	return scrubber.Replace(err.Error())
}

// hint tells the operator what to check after a failed dial.
func hint(err error) string {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Code {
		case amqp.AccessRefused:
			return "check the user and password in EVENTBUS_AMQP_URL"
		case amqp.NotAllowed:
			return "check the virtual host in EVENTBUS_AMQP_URL and the user's permissions"
		}
	}
	return "check that RabbitMQ is running and EVENTBUS_AMQP_URL"
}
