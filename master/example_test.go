package master_test

import (
	"context"
	"fmt"
	"os"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/master"
)

// Run is what `wsd serve` calls: it binds, starts the workers and supervises
// them until SIGTERM or SIGINT. Load is called again on SIGHUP and SIGUSR2.
func ExampleRun() {
	cfg := config.Default()
	cfg.Address, cfg.Port, cfg.Processes = "127.0.0.1", 8080, 4
	err := master.Run(context.Background(), master.Options{
		Config: cfg,
		Load:   func() (config.Config, error) { return cfg, nil },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsd:", err)
		os.Exit(1)
	}
}
