package config

import (
	"fmt"
	"reflect"

	"github.com/spf13/pflag"
)

// usage is the help line of each flag. A test checks that every setting has
// one, so that `wsd serve --help` documents them all.
var usage = map[string]string{
	"address":               "IP `address` to listen on (0.0.0.0 all IPv4, :: all addresses)",
	"port":                  "TCP `port` to listen on",
	"processes":             "worker processes to run, at most 1024; 0 runs one per CPU available to wsd (affinity mask and cgroup quota)",
	"threads":               "GOMAXPROCS of each worker process; 0 keeps Go's default",
	"max-msg-size":          "largest incoming WebSocket message in `bytes`, after decompression",
	"timeout":               "`seconds` of silence before a ping is sent (0-255); a peer silent for as long again is closed; 0 disables pings",
	"shutdown-timeout":      "longest a graceful stop may take",
	"worker-timeout":        "longest a worker may go without a heartbeat before the master kills and replaces it as hung; 0 disables the check",
	"drain-period":          "time over which a worker replaced by a reload or binary upgrade closes its WebSockets (1012 Service Restart), spread so that clients do not all reconnect at once; 0 closes them at once",
	"compression":           "negotiate permessage-deflate compression",
	"compression-level":     "flate compression `level`, 1 (fastest) to 9 (smallest)",
	"compression-threshold": "smallest outgoing message in `bytes` that is compressed",
	"max-backpressure":      "most `bytes` queued for one slow reader before its connection is closed",
	"allowed-origins":       "Origin values a browser upgrade may carry, such as https://example.com or https://*.example.com; * allows any; empty allows the same host only",
	"subprotocols":          "WebSocket subprotocols to accept, in preference order; the first one a client also offers is chosen",
	"max-header-size":       "largest request header block in `bytes` (larger gets 431)",
	"header-timeout":        "time a client has to send a whole request header",
	"idle-timeout":          "longest a keep-alive HTTP connection may wait between requests",
	"max-body-size":         "largest request body in `bytes` (larger gets 413)",
	"max-conns":             "most connections, HTTP and WebSocket, per worker; 0 follows the open-file limit (RLIMIT_NOFILE), less a reserve for the worker's own descriptors",
	"max-conns-per-ip":      "most connections from one IP address per worker; 0 means no limit",
	"tls-cert":              "PEM certificate `file`; with --tls-key, serve https and wss",
	"tls-key":               "PEM private key `file` for --tls-cert",
	"redis":                 "redis://host:port/db `URL` through which pub/sub crosses hosts",
	"publish-token":         "bearer `token` that POST /publish requires; empty requires none",
	"history-size":          "recent `messages` each pub/sub channel keeps for subscribers that come back (?format=json&offset=N&epoch=E): in the worker with --processes 1, in the master with more, in Redis Streams with --redis; 0 keeps none",
	"presence":              "list every /pubsub and /sse subscriber in its channel's presence (GET /presence/{channel}) and publish join and leave events to the subscribers that ask (?presence=1)",
	"presence-ttl":          "how long a worker's presence entries outlive it in Redis (refreshed every third of it while it runs); with --redis only",
	"history-ttl":           "how long a message stays in a channel's history; 0 keeps the last history-size whatever their age",
	"pubsub-echo":           "deliver a /pubsub client's own messages back to it",
	"jwt-secret":            "HS256 `secret` (32 bytes or more) of the tokens /pubsub and /sse subscribers must present; empty requires none",
	"jwt-public-key":        "PEM `file` with the RSA (RS256), ECDSA P-256 (ES256) or Ed25519 (EdDSA) public key of subscriber tokens; empty requires none",
	"jwt-cookie":            "`name` of the cookie a subscriber token may come in; empty takes none from cookies",
	"sse-heartbeat":         "interval of the comment lines that keep /sse streams alive, at least 100ms",
	"public":                "`directory` served as static files; empty serves none",
	"dir-listing":           "list directories under --public",
	"admin-address":         "host:port for the metrics and health endpoints; empty disables them",
	"pid-file":              "`file` the master writes its pid to while it runs, for wsd reload; empty writes none",
	"log-format":            "log `format`: text or json",
	"log-level":             "log `level`: debug, info, warn or error",
	"access-log":            "log one line per HTTP request",
	"config":                "configuration `file` read under the environment and flags: TOML, or YAML (.yaml, .yml) or JSON (.json) by its extension",
}

// shorthand holds the one-letter forms of the most used flags.
var shorthand = map[string]string{
	"config": "c",
	"port":   "p",
}

// AddFlags registers one flag per setting on fs, each showing its default
// from [Default] and a line of help. [Load] reads back only the flags that
// were set on the command line, so the defaults shown never mask a value from
// the file or the environment.
func AddFlags(fs *pflag.FlagSet) {
	def := reflect.ValueOf(Default())
	for _, s := range settings {
		v := &flagValue{v: def.Field(s.index)}
		f := fs.VarPF(v, s.flag, shorthand[s.flag], usage[s.flag])
		if s.typ.Kind() == reflect.Bool {
			f.NoOptDefVal = "true"
		}
	}
}

// flagValue is the pflag.Value of every setting. It parses with the same
// rules as the environment so a value means the same in both places.
type flagValue struct {
	v   reflect.Value
	set bool
}

func (f *flagValue) String() string { return format(f.v) }

func (f *flagValue) Type() string { return typeName(f.v.Type()) }

// Set parses s. A list flag given more than once accumulates, as
// --allowed-origins a --allowed-origins b means "a,b"; its first use
// replaces the default rather than adding to it.
func (f *flagValue) Set(s string) error {
	v, err := parse(f.v.Type(), s)
	if err != nil {
		return err
	}
	if f.set && v.Kind() == reflect.Slice {
		v = reflect.AppendSlice(f.v, v)
	}
	f.v, f.set = v, true
	return nil
}

// flagValues returns the settings set on the command line, by field index.
func flagValues(fs *pflag.FlagSet) (map[int]reflect.Value, error) {
	vals := make(map[int]reflect.Value)
	if fs == nil {
		return vals, nil
	}
	for _, s := range settings {
		f := fs.Lookup(s.flag)
		if f == nil || !f.Changed {
			continue
		}
		switch fv := f.Value.(type) {
		case *flagValue:
			vals[s.index] = fv.v
		case pflag.SliceValue:
			// A caller's own StringSlice flag.
			if s.typ.Kind() != reflect.Slice {
				return nil, fmt.Errorf("flag --%s: registered as a list, but %s is not one", s.flag, s.flag)
			}
			vals[s.index] = reflect.ValueOf(fv.GetSlice())
		default:
			// A flag registered by the caller rather than AddFlags.
			v, err := parse(s.typ, fv.String())
			if err != nil {
				return nil, fmt.Errorf("flag --%s: %w", s.flag,
					&FieldError{Field: s.flag, Value: fv.String(), Reason: err.Error()})
			}
			vals[s.index] = v
		}
	}
	return vals, nil
}
