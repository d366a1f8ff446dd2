package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/client"
)

// A client of a running `eventbus serve`, with the token from the
// environment.
func ExampleNew() {
	c, err := client.New("http://127.0.0.1:8080", client.Config{Token: os.Getenv("EVENTBUS_API_TOKEN"),
		Timeout: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("relay healthy:", st.Healthy, "lag:", st.Lag.Duration())
}

// Publishing with an ID of the producer's makes a retry safe: the second
// call stores nothing and answers the stored event.
func ExampleClient_Publish() {
	c, _ := client.New("http://127.0.0.1:8080", client.Config{Token: os.Getenv("EVENTBUS_API_TOKEN")})
	data, _ := json.Marshal(map[string]any{"quiz_id": uuid.NewString(), "learner_id": uuid.NewString(), "score_raw": 93})
	stored, err := c.Publish(context.Background(), client.NewEvent{
		ID: uuid.Must(uuid.NewV7()), Type: "quiz.submitted", Data: data, Subject: "quiz-42"})
	var apiErr *client.Error
	switch {
	case errors.Is(err, client.ErrInvalidEvent) && errors.As(err, &apiErr):
		log.Fatalf("refused: %s (field %s)", apiErr.Detail, apiErr.Field)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("stored at position", stored.Event.Position, "new:", stored.New)
}

// All reads every event a filter selects, page by page.
func ExampleClient_All() {
	c, _ := client.New("http://127.0.0.1:8080", client.Config{Token: os.Getenv("EVENTBUS_API_TOKEN")})
	f := client.Filter{Types: []string{"badge.awarded"}, Since: time.Now().Add(-24 * time.Hour)}
	for e, err := range c.All(context.Background(), f) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Position, e.Type, e.Subject)
	}
}

// Tail follows what commits from now on, until the context ends.
func ExampleClient_Tail() {
	c, _ := client.New("http://127.0.0.1:8080", client.Config{Token: os.Getenv("EVENTBUS_API_TOKEN")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := client.Filter{Types: []string{"quiz.submitted"}}
	end, err := c.End(ctx, f)
	if err != nil {
		log.Fatal(err)
	}
	f.After = end
	for e, err := range c.Tail(ctx, f, time.Second) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.ID, e.Type)
	}
}

// A replay is planned first: the dry run says how many events it would
// send, and sends nothing.
func ExampleClient_Replay() {
	c, _ := client.New("http://127.0.0.1:8080", client.Config{Token: os.Getenv("EVENTBUS_ADMIN_TOKEN")})
	ctx := context.Background()
	req := client.ReplayRequest{Types: []string{"quiz.submitted"}, Since: time.Now().Add(-24 * time.Hour), Queue: "badges"}
	plan, err := c.PlanReplay(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("would replay", plan.Total, "events")
	res, err := c.Replay(ctx, req)
	var apiErr *client.Error
	if errors.As(err, &apiErr) && apiErr.Resume != "" {
		req.After = apiErr.Resume // it stopped early: go on from there
		res, err = c.Replay(ctx, req)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replayed", res.Published, "events")
}

// Dead letters are listed, then put back on the group's queue once their
// cause is fixed.
func ExampleClient_Requeue() {
	c, _ := client.New("http://127.0.0.1:8080", client.Config{Token: os.Getenv("EVENTBUS_ADMIN_TOKEN")})
	ctx := context.Background()
	letters, err := c.DeadLetters(ctx, "badges", 100)
	if err != nil {
		log.Fatal(err)
	}
	var ids []string
	for _, dl := range letters {
		fmt.Println(dl.MessageID, dl.Reason)
		ids = append(ids, dl.MessageID)
	}
	n, err := c.Requeue(ctx, "badges", ids)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("requeued", n)
}
