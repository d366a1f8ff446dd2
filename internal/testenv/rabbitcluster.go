package testenv

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds of starting a cluster: its nodes boot side by side, each slower
// than one alone; then they may take a while to see each other running.
const (
	rabbitClusterStartup   = 3 * time.Minute
	rabbitClusterFormation = 2 * time.Minute
)

// RabbitCluster is a RabbitMQ cluster of one test's own: private nodes
// (see RabbitNode) that share an Erlang cookie. Quorum queues declared once
// it has formed get a replica on every node.
type RabbitCluster struct {
	Nodes []*RabbitNode
}

// StartRabbitCluster starts size private nodes whose rabbitmq.conf holds
// config, and waits until every node runs in one cluster. The nodes stop
// when the test ends. Without the RabbitMQ binaries the test skips, loudly,
// or fails when EVENTBUS_REQUIRE_SERVICES=1.
//
// The first node boots alone; once it accepts connections the others boot
// side by side and join it as they boot, by classic-config peer discovery
// listing only the first: on a loaded machine, joining with rabbitmqctl
// (stop_app, join_cluster, start_app, one node after the other) took as
// long again as booting. Listing only one seed keeps nodes that boot at the
// same moment from forming clusters of their own. The seed must have
// finished booting before anyone joins it: a node that copies the seed's
// schema while the seed is still enabling its feature flags gets tables of
// the old shape and fails its boot (schema_integrity_check_failed,
// table_attributes_mismatch on rabbit_user).
func StartRabbitCluster(t testing.TB, size int, config string) *RabbitCluster {
	t.Helper()
	if size < 1 {
		t.Fatalf("testenv: a RabbitMQ cluster of %d nodes", size)
	}
	start := time.Now()
	cookie := Name("cookie")
	seed := rabbitNodeName()
	c := &RabbitCluster{Nodes: []*RabbitNode{launchRabbitNode(t, seed, config, cookie)}}
	deadline := start.Add(rabbitClusterStartup)
	if err := c.Nodes[0].awaitAccepting(deadline); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	joiner := fmt.Sprintf(`%s
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = %s
cluster_formation.discovery_retry_limit = %d
cluster_formation.discovery_retry_interval = 500
`, config, seed, int(rabbitClusterStartup/(500*time.Millisecond)))
	for range size - 1 {
		c.Nodes = append(c.Nodes, launchRabbitNode(t, rabbitNodeName(), joiner, cookie))
	}
	for _, n := range c.Nodes[1:] {
		if err := n.awaitAccepting(deadline); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), rabbitClusterFormation)
	defer cancel()
	if err := c.AwaitRunning(ctx, size); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return c
}

// URLs returns the nodes' AMQP URLs separated by commas, as
// EVENTBUS_AMQP_URL lists the nodes of a cluster.
func (c *RabbitCluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL
	}
	return strings.Join(urls, ",")
}

// AwaitRunning waits until a node that runs sees want nodes running in the
// cluster, itself included.
func (c *RabbitCluster) AwaitRunning(ctx context.Context, want int) error {
	var last string
	for {
		for _, n := range c.Nodes {
			select {
			case <-n.exited:
				continue
			default:
			}
			out, err := n.Eval(ctx, "length(rabbit_nodes:all_running()).")
			if err != nil {
				last = err.Error()
				continue
			}
			if got, err := strconv.Atoi(out); err == nil && got == want {
				return nil
			}
			last = fmt.Sprintf("%s sees %s nodes running", n.Name, out)
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the RabbitMQ cluster has not got %d nodes running: %w (last: %s)", want, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
