//go:build !race

package storetest

// raceEnabled is true in a build with the race detector, which makes the
// pure-Go SQLite driver about ten times slower.
const raceEnabled = false
