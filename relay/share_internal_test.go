package relay

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/edupulse/eventbus/store"
)

// TestShareConverges: from any state (partitions free, held by live
// processes in any proportion, or by dead ones whose leases expired),
// processes that each apply their own plan in turn, one round after
// another, reach a fair share within a few rounds: every partition held,
// each process holding N/M or one more, and then nothing moves.
func TestShareConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 16).Draw(t, "partitions")
		m := rapid.IntRange(1, 6).Draw(t, "processes")
		now := time.Now()
		procs := make([]string, m)
		members := make([]store.Member, m)
		for i := range procs {
			procs[i] = fmt.Sprintf("host/%d/%06x", 100+i, rapid.IntRange(0, 1<<24-1).Draw(t, "suffix"))
			members[i] = store.Member{Holder: procs[i], Until: now.Add(time.Second)}
		}
		// owner of each partition: "" free, "dead" expired, or a process.
		owner := make([]string, n)
		for p := range owner {
			switch k := rapid.IntRange(-2, m-1).Draw(t, "owner"); k {
			case -2:
			case -1:
				owner[p] = "dead"
			default:
				owner[p] = procs[k]
			}
		}
		leases := func() []store.Lease {
			out := make([]store.Lease, n)
			for p, o := range owner {
				out[p] = store.Lease{Partition: store.Partition{Number: p}, Holder: o, Until: now.Add(time.Second)}
				if o == "dead" {
					out[p].Until = now.Add(-time.Second)
				}
			}
			return out
		}
		mineOf := func(h string) map[int]bool {
			mine := map[int]bool{}
			for p, o := range owner {
				if o == h {
					mine[p] = true
				}
			}
			return mine
		}
		round := func() (moved bool) {
			for _, i := range rapid.Permutation(rangeOf(m)).Draw(t, "order") {
				h := procs[i]
				plan := share(h, n, members, leases(), mineOf(h), nil, now)
				for _, p := range plan.release {
					owner[p], moved = "", true
				}
				claimed := 0
				for _, p := range plan.free {
					if claimed == plan.claim {
						break
					}
					if owner[p] == "" || owner[p] == "dead" {
						owner[p], moved = h, true
						claimed++
					}
				}
			}
			return moved
		}
		for r := 0; ; r++ {
			if !round() {
				break
			}
			if r == 8 {
				t.Fatalf("still moving after %d rounds: %v", r, owner)
			}
		}
		count := map[string]int{}
		for p, o := range owner {
			if o == "" || o == "dead" {
				t.Fatalf("partition %d is not held once settled: %v", p, owner)
			}
			count[o]++
		}
		for _, h := range procs {
			if c := count[h]; c != n/m && c != n/m+1 {
				t.Fatalf("%s holds %d of %d partitions with %d processes: %v", h, c, n, m, count)
			}
		}
	})
}

func rangeOf(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
