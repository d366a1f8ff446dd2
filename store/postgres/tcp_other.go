//go:build !linux

package postgres

import "syscall"

// setTCPUserTimeout does nothing where TCP_USER_TIMEOUT does not exist;
// keepalive probes still find a dead peer.
func setTCPUserTimeout(_, _ string, _ syscall.RawConn) error { return nil }
