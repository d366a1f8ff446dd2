//go:build unix

package config

import (
	"io/fs"
	"syscall"
)

// modeBitsMeaningful: on Unix a file's mode says who may read it.
const modeBitsMeaningful = true

func ownedByRoot(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
