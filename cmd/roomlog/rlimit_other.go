//go:build !unix

package main

import "log/slog"

// socketBound is max: this platform has no open-file limit to fit.
func socketBound(max int, _ *slog.Logger) int { return max }
