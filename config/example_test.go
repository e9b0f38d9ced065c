package config_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/spf13/pflag"
	"github.com/wsd-server/wsd/config"
)

// A command registers the flags, parses its arguments and loads the
// configuration with the process environment (os.Environ in real use), then
// validates it before starting.
func ExampleLoad() {
	fs := pflag.NewFlagSet("wsd", pflag.ContinueOnError)
	config.AddFlags(fs)
	if err := fs.Parse([]string{"--port", "8080", "--compression"}); err != nil {
		log.Fatal(err)
	}
	env := []string{"WSD_PORT=9090", "WSD_TIMEOUT=55", "HOME=/root"}

	cfg, err := config.Load(fs, env)
	if err != nil {
		log.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.ListenAddr(), cfg.Timeout, cfg.Compression)
	// Output: 0.0.0.0:8080 55 true
}

func ExampleConfig_Validate() {
	cfg := config.Default()
	cfg.Port = 70000
	cfg.MaxMsgSize = -1

	err := cfg.Validate()
	fmt.Println(err)

	var fe *config.FieldError
	if errors.As(err, &fe) {
		fmt.Printf("first bad setting: %s\n", fe.Field)
	}
	// Output:
	// port = 70000: must be between 1 and 65535
	// max-msg-size = -1: must be positive
	// first bad setting: port
}

// A command warns about WSD_* variables that are no setting, which Load
// ignores.
func ExampleUnknownEnv() {
	env := []string{"WSD_PROCESES=4", "WSD_PORT=8080", "HOME=/root"}
	for _, w := range config.UnknownEnv(env) {
		fmt.Println("warning:", w)
	}
	// Output: warning: WSD_PROCESES is not a wsd setting; did you mean WSD_PROCESSES?
}

// LoadSources tells where each value came from, as `wsd config` shows.
func ExampleLoadSources() {
	fs := pflag.NewFlagSet("wsd", pflag.ContinueOnError)
	config.AddFlags(fs)
	if err := fs.Parse([]string{"--port", "8080"}); err != nil {
		log.Fatal(err)
	}
	cfg, sources, err := config.LoadSources(fs, []string{"WSD_TIMEOUT=55"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Port, sources["port"])
	fmt.Println(cfg.Timeout, sources["timeout"])
	fmt.Println(cfg.Address, sources["address"])
	// Output:
	// 8080 flag --port
	// 55 environment WSD_TIMEOUT
	// 0.0.0.0 default
}
