package config

import (
	"io"
	"log/slog"
	"net"
	"strconv"
)

// ListenAddr returns the host:port to listen on, with an IPv6 address in
// brackets.
func (c Config) ListenAddr() string {
	return net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
}

// Logger returns a logger writing to w in c's LogFormat, dropping records
// below c's LogLevel, with attrs on every record. An unknown format or level,
// which Validate rejects, falls back to text and info.
func (c Config) Logger(w io.Writer, attrs ...slog.Attr) *slog.Logger {
	var level slog.Level
	if level.UnmarshalText([]byte(c.LogLevel)) != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationText}
	var h slog.Handler
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h.WithAttrs(attrs))
}

// durationText renders a time.Duration as its String ("1.5s") rather than
// as JSON's bare nanoseconds, so both formats read alike.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
