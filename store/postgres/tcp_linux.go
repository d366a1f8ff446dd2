package postgres

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setTCPUserTimeout makes the kernel drop a connection whose sent data stays
// unacknowledged for tcpUserTimeout, so that a dead peer fails a call in
// flight instead of hanging it for the kernel's default of about 15 minutes.
func setTCPUserTimeout(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(tcpUserTimeout.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
