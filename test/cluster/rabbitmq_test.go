package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/eventbus/broker/rabbitmq"
	"github.com/edupulse/eventbus/internal/testenv"
)

// TestRabbitClusterNodeLoss runs the bus on a 3-node RabbitMQ cluster of its
// own, EVENTBUS_AMQP_URL listing the three nodes, and SIGKILLs the node that
// serve (API and relay) and the observer consumer are connected to while
// events flow. Nothing acknowledged may be lost, each stream must arrive in
// order, and serve must heal by reconnecting to another node, without a
// restart.
func TestRabbitClusterNodeLoss(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "PostgreSQL", testenv.PostgresURL())
	start := time.Now()
	cluster := testenv.StartRabbitCluster(t, 3, "")
	formed := time.Since(start)
	ctx := testenv.Context(t, 8*time.Minute)
	schemaURL := testenv.PostgresSchema(t)
	r := newRig(t, ctx, schemaURL, cluster.URLs())
	victim, witness := cluster.Nodes[0], cluster.Nodes[1]
	names := make([]string, len(cluster.Nodes))
	for i, n := range cluster.Nodes {
		names[i] = n.Name
	}
	sort.Strings(names)

	// The observer's queue is a quorum queue with a replica on every node.
	q := quorumQueue(t, ctx, witness, r.group)
	if q.Type != "quorum" || !slices.Equal(sorted(q.Members), names) {
		t.Fatalf("queue %s: type %q, members %v; want a quorum queue on %v", r.group, q.Type, q.Members, names)
	}
	// The first node listed is the one both connect to.
	conns := connectionNodes(t, ctx, witness)
	for _, name := range []string{rabbitmq.DefaultConnectionName, observerConnection} {
		if !slices.Equal(conns[name], []string{victim.Name}) {
			t.Fatalf("connection %q is on %v, want on %s (the first node of EVENTBUS_AMQP_URL); all: %v", name, conns[name], victim.Name, conns)
		}
	}

	res := r.runWithFault(ctx, 4, 8, 200, 200, func() time.Time {
		victim.Kill()
		return time.Now()
	}, storedEventIDs(schemaURL))

	after := connectionNodes(t, ctx, witness)
	for _, name := range []string{rabbitmq.DefaultConnectionName, observerConnection} {
		if len(after[name]) != 1 || after[name][0] == victim.Name {
			t.Errorf("after the kill, connection %q is on %v, want on one surviving node", name, after[name])
		}
	}
	res.report(t, "RabbitMQ cluster, node killed",
		fmt.Sprintf("RabbitMQ cluster, node killed: 3 nodes formed in %v; the queue's replicas were on %v, its leader on %s; serve and the observer were connected to %s, afterwards serve to %v and the observer to %v (it reconnected %d times)",
			formed.Round(time.Second), q.Members, q.Leader, victim.Name, after[rabbitmq.DefaultConnectionName], after[observerConnection], r.broker.Reconnects()))
}

// queueInfo is a row of rabbitmqctl list_queues.
type queueInfo struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Members []string `json:"members"`
	Leader  string   `json:"leader"`
}

func quorumQueue(t testing.TB, ctx context.Context, n *testenv.RabbitNode, name string) queueInfo {
	t.Helper()
	out, err := n.Ctl(ctx, "list_queues", "--quiet", "--formatter", "json", "name", "type", "members", "leader")
	if err != nil {
		t.Fatal(err)
	}
	var qs []queueInfo
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		t.Fatalf("list_queues: %v: %s", err, out)
	}
	for _, q := range qs {
		if q.Name == name {
			return q
		}
	}
	t.Fatalf("list_queues has no queue %s: %s", name, out)
	return queueInfo{}
}

// connectionNodes returns, by connection name, the nodes that the cluster's
// AMQP connections are on.
func connectionNodes(t testing.TB, ctx context.Context, n *testenv.RabbitNode) map[string][]string {
	t.Helper()
	out, err := n.Ctl(ctx, "list_connections", "--quiet", "--no-table-headers", "pid", "client_properties")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		pid, props, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok {
			continue
		}
		// <node@host.1.2.3>: the node, then the process's numbers.
		node, _, _ := strings.Cut(strings.TrimPrefix(pid, "<"), ".")
		const key = `{"connection_name","`
		i := strings.Index(props, key)
		if i < 0 {
			continue
		}
		name, _, _ := strings.Cut(props[i+len(key):], `"`)
		nodes[name] = append(nodes[name], node)
	}
	return nodes
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
