//go:build !unix

package mls

import "time"

// cpuTime returns 0: the process CPU time is read only on Unix.
func cpuTime() time.Duration { return 0 }
