package event_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
)

// TestCheckSaysWhyDataIsNotJSON: data too deep for the decoder is an
// object all the same; the error says what is wrong with it.
func TestCheckSaysWhyDataIsNotJSON(t *testing.T) {
	r := edupulse.Registry()
	deep := `{"quiz_id":"x","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	err := r.Check(edupulse.TypeQuizSubmitted, []byte(deep))
	var verr *event.ValidationError
	if !errors.As(err, &verr) || !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("Check: %v; want a ValidationError saying the data is not valid JSON", err)
	}
	if err := r.Check(edupulse.TypeQuizSubmitted, []byte(`[1,2]`)); err == nil || !strings.Contains(err.Error(), "must be a JSON object") {
		t.Fatalf("Check of an array: %v; want it to say data must be an object", err)
	}
}
