//go:build chaos

package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// wsdBin is the wsd binary TestMain builds. Every process running it was
// started by this test binary, directly or through a daemon's master.
var wsdBin string

// wsdFlag names a wsd binary to attack instead of building one, for
// example a release: go test -tags chaos ./chaos/ -args -wsd=/usr/local/bin/wsd
var wsdFlag = flag.String("wsd", "", "the wsd binary to test (default: build ./cmd/wsd)")

// builtBinary says that wsdBin was built by TestMain, so that every
// process running it belongs to this test.
var builtBinary bool

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	if *wsdFlag != "" {
		bin, err := filepath.Abs(*wsdFlag)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// /proc/PID/exe names the file itself: the leftover checks compare with it.
		if bin, err = filepath.EvalSymlinks(bin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		wsdBin = bin
		code := m.Run()
		printSummary(os.Stdout)
		return code
	}
	dir, err := os.MkdirTemp("", "wsd-chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "wsd")
	// No -race: the memory figures are about the binary people run.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/wsd-server/wsd/cmd/wsd")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building wsd: %v\n%s", err, out)
		return 1
	}
	wsdBin, builtBinary = bin, true
	code := m.Run()
	printSummary(os.Stdout)
	return code
}
