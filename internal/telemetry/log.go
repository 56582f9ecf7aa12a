// Package telemetry sets up what every component shares for visibility:
// the structured logger (log/slog) and OpenTelemetry tracing.
package telemetry

import (
	"io"
	"log/slog"

	"github.com/gatehouse/gatehouse/internal/config"
)

// NewLogger returns a slog logger writing format (json or text) at level.
// The level is a LevelVar so that a config reload can change it.
func NewLogger(w io.Writer, format config.LogFormat, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == config.LogText {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Level converts a config log level.
func Level(l config.LogLevel) slog.Level {
	switch l {
	case config.LogDebug:
		return slog.LevelDebug
	case config.LogWarn:
		return slog.LevelWarn
	case config.LogError:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
