package ratelog_test

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/wsd-server/wsd/internal/ratelog"
)

func Example() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	lim := ratelog.New(log, time.Hour)
	for range 1000 {
		lim.Error("accept", "accept failed", "err", errors.New("too many open files"))
	}
	// Output:
	// level=ERROR msg="accept failed" err="too many open files"
}
