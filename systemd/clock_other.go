//go:build !linux

package systemd

import "errors"

func monotonicUsec() (uint64, error) {
	return 0, errors.New("CLOCK_MONOTONIC is only read on Linux")
}
