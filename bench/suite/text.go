package suite

import (
	"errors"
	"strings"
)

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func joinNotes(notes []string) string { return strings.Join(notes, "; ") }

func isSkipped(err error) bool { return errors.Is(err, ErrSkipped) }

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
