//go:build !unix

package mls

import "time"

// processCPU is not measured on this platform.
func processCPU() time.Duration { return 0 }

// cpuTime is processCPU under the name the post-quantum benchmarks use.
func cpuTime() time.Duration { return processCPU() }
