//go:build race

package cluster

// raceEnabled: the test binary runs with the race detector, so the eventbus
// binary it builds does too.
const raceEnabled = true
