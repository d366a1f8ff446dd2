//go:build !unix

package config

import "io/fs"

// modeBitsMeaningful: elsewhere (Windows) the mode bits Go reports do not
// say who may read a file; access lists do, and are not checked.
const modeBitsMeaningful = false

func ownedByRoot(fs.FileInfo) bool { return false }
