package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wsd-server/wsd/config"
)

func TestRunSelf(t *testing.T) {
	var out strings.Builder
	err := run([]string{"-self", "-cases", `^(0\.1|2\.1|6\.3\.1|13\.1\.1)$`}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.HasSuffix(out.String(), "\n4 passed, 0 failed\n") {
		t.Errorf("output does not end with the summary line:\n%s", out.String())
	}
}

func TestRunURL(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	target, err := serveWorker(ctx, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	// Without -compression the 12.x/13.x cases are left out.
	if err := run([]string{"-cases", `^(1\.1\.1|12\.1\.1)$`, "ws://" + target.Addr + "/"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.HasSuffix(out.String(), "\n1 passed, 0 failed\n") {
		t.Errorf("output does not end with the summary line:\n%s", out.String())
	}
	// The same server has compression off, so asking for it must fail.
	out.Reset()
	err = run([]string{"-compression", "-cases", `^12\.1\.1$`, "ws://" + target.Addr + "/"}, &out)
	if !errors.Is(err, errFailed) || !strings.Contains(out.String(), "0 passed, 1 failed") {
		t.Errorf("compression case against a server without compression: %v\n%s", err, out.String())
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-self", "ws://127.0.0.1:1/"},
		{"http://127.0.0.1:1/"},
		{"-cases", "(", "ws://127.0.0.1:1/"},
	} {
		var out strings.Builder
		if err := run(args, &out); err == nil || errors.Is(err, errFailed) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}
