package config

import (
	"time"
)

// Config is the whole configuration of the wsd daemon. The zero value is not
// useful; start from Default and override.
//
// Every field has a flag (the `flag` tag), a WSD_* environment variable (the
// flag name upper-cased, dashes turned into underscores, WSD_ prefixed) and a
// key in the optional configuration file (the `toml` tag, which names the key
// in YAML and JSON files too). Precedence, highest first: flags, environment,
// file, defaults.
type Config struct {
	// Address is the IP address to listen on ("" or "0.0.0.0" means all IPv4,
	// "::" all addresses).
	Address string `toml:"address" flag:"address"`
	// Port is the TCP port to listen on (1-65535).
	Port int `toml:"port" flag:"port"`
	// Processes is the number of worker processes, at most 1024; 0 means one
	// per CPU this process may use (see AvailableCPUs).
	Processes int `toml:"processes" flag:"processes"`
	// Threads is GOMAXPROCS for each worker process; 0 leaves Go's default.
	Threads int `toml:"threads" flag:"threads"`

	// MaxMsgSize is the largest incoming WebSocket message in bytes
	// (after decompression).
	MaxMsgSize int64 `toml:"max_msg_size" flag:"max-msg-size"`
	// Timeout is the idle time in seconds after which a ping is sent; a peer
	// silent for a further Timeout is closed. 0 disables pings.
	Timeout int `toml:"timeout" flag:"timeout"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout" flag:"shutdown-timeout"`
	// WorkerTimeout is how long a worker may go without a heartbeat to the
	// master before the master kills it as hung and starts another on its
	// socket; 0 turns the check off.
	WorkerTimeout time.Duration `toml:"worker_timeout" flag:"worker-timeout"`
	// DrainPeriod is the time over which a worker replaced by a reload or
	// a binary upgrade closes its WebSockets (code 1012), spread evenly so
	// that their clients do not all reconnect at once; 0 closes them at
	// once.
	DrainPeriod time.Duration `toml:"drain_period" flag:"drain-period"`

	// Compression enables permessage-deflate negotiation.
	Compression bool `toml:"compression" flag:"compression"`
	// CompressionLevel is the flate level, 1 (fastest) to 9 (smallest).
	CompressionLevel int `toml:"compression_level" flag:"compression-level"`
	// CompressionThreshold is the smallest outgoing message that is compressed.
	CompressionThreshold int `toml:"compression_threshold" flag:"compression-threshold"`
	// MaxBackpressure is the most bytes queued for one slow reader before its
	// connection is closed.
	MaxBackpressure int `toml:"max_backpressure" flag:"max-backpressure"`
	// AllowedOrigins lists the Origin values a browser upgrade may carry
	// ("https://example.com", "https://*.example.com"); empty means same host
	// only, "*" means any.
	AllowedOrigins []string `toml:"allowed_origins" flag:"allowed-origins"`
	// Subprotocols are the WebSocket subprotocols offered, in preference
	// order: the first one a client also asks for is named in the 101.
	// Empty names none.
	Subprotocols []string `toml:"subprotocols" flag:"subprotocols"`

	// MaxHeaderSize is the largest request header block in bytes (431 above).
	MaxHeaderSize int `toml:"max_header_size" flag:"max-header-size"`
	// HeaderTimeout is the time a client has to send a whole request.
	HeaderTimeout time.Duration `toml:"header_timeout" flag:"header-timeout"`
	// IdleTimeout is how long a keep-alive HTTP connection may wait between
	// requests.
	IdleTimeout time.Duration `toml:"idle_timeout" flag:"idle-timeout"`
	// MaxBodySize is the largest request body in bytes (413 above).
	MaxBodySize int `toml:"max_body_size" flag:"max-body-size"`
	// MaxConns is the most connections (HTTP and WebSocket) per worker; 0
	// means the worker's open-file limit (RLIMIT_NOFILE) less a reserve for
	// its own descriptors, resolved by the worker at start.
	MaxConns int `toml:"max_conns" flag:"max-conns"`
	// MaxConnsPerIP is the most connections from one IP per worker; 0 = no limit.
	MaxConnsPerIP int `toml:"max_conns_per_ip" flag:"max-conns-per-ip"`

	// TLSCert and TLSKey are PEM files; both set means https and wss.
	TLSCert string `toml:"tls_cert" flag:"tls-cert"`
	TLSKey  string `toml:"tls_key" flag:"tls-key"`

	// Redis is a redis://host:port/db URL; set, pub/sub crosses hosts through it.
	Redis string `toml:"redis" flag:"redis"`
	// PublishToken, when set, is the bearer token POST /publish requires.
	PublishToken string `toml:"publish_token" flag:"publish-token"`
	// HistorySize is how many recent messages each pub/sub channel keeps,
	// so that a subscriber that comes back with the last offset it saw gets
	// what it missed; 0 keeps none. The worker keeps it with one process,
	// the master with more, Redis Streams with Redis.
	HistorySize int `toml:"history_size" flag:"history-size"`
	// HistoryTTL is how long a message stays in a channel's history; 0
	// keeps it as long as it is among the last HistorySize.
	HistoryTTL time.Duration `toml:"history_ttl" flag:"history-ttl"`
	// Presence lists every subscriber in its channel's presence and
	// publishes join and leave events to the subscribers that ask.
	Presence bool `toml:"presence" flag:"presence"`
	// PresenceTTL is how long a worker's presence entries outlive it in
	// Redis; they are refreshed every third of it.
	PresenceTTL time.Duration `toml:"presence_ttl" flag:"presence-ttl"`
	// PubSubEcho makes a /pubsub client receive its own messages.
	PubSubEcho bool `toml:"pubsub_echo" flag:"pubsub-echo"`
	// JWTSecret, when set, is the HS256 key of the tokens that /pubsub and
	// /sse subscribers must present; at least 32 bytes.
	JWTSecret string `toml:"jwt_secret" flag:"jwt-secret"`
	// JWTPublicKey, when set, is a PEM file holding the RSA (RS256), ECDSA
	// P-256 (ES256) or Ed25519 (EdDSA) public key of subscriber tokens.
	JWTPublicKey string `toml:"jwt_public_key" flag:"jwt-public-key"`
	// JWTCookie is the cookie a subscriber token may come in; empty takes
	// tokens from the Authorization header and the token query parameter
	// only.
	JWTCookie string `toml:"jwt_cookie" flag:"jwt-cookie"`
	// SSEHeartbeat is the interval of the comment lines that keep /sse
	// streams (and the proxies on their way) alive.
	SSEHeartbeat time.Duration `toml:"sse_heartbeat" flag:"sse-heartbeat"`

	// Public is a folder served as static files; empty serves none.
	Public string `toml:"public" flag:"public"`
	// DirListing allows directory listings under Public.
	DirListing bool `toml:"dir_listing" flag:"dir-listing"`
	// AdminAddress is host:port for metrics and health; empty disables it.
	AdminAddress string `toml:"admin_address" flag:"admin-address"`
	// PidFile, when set, is a file the master writes its pid to at start
	// and removes when it stops; `wsd reload` finds the daemon through it.
	PidFile string `toml:"pid_file" flag:"pid-file"`
	// LogFormat is "text" or "json".
	LogFormat string `toml:"log_format" flag:"log-format"`
	// LogLevel is "debug", "info", "warn" or "error".
	LogLevel string `toml:"log_level" flag:"log-level"`
	// AccessLog logs one line per HTTP request.
	AccessLog bool `toml:"access_log" flag:"access-log"`

	// File is the configuration file this Config was loaded from, if any.
	// It is not itself a file key.
	File string `toml:"-" flag:"config"`
}

// Default returns the configuration used when nothing overrides it.
func Default() Config {
	return Config{
		Address:              "0.0.0.0",
		Port:                 3000,
		Processes:            1,
		Threads:              0,
		MaxMsgSize:           262144,
		Timeout:              40,
		ShutdownTimeout:      10 * time.Second,
		WorkerTimeout:        10 * time.Second,
		DrainPeriod:          10 * time.Second,
		Compression:          false,
		CompressionLevel:     1,
		CompressionThreshold: 256,
		MaxBackpressure:      1 << 20,
		MaxHeaderSize:        8192,
		HeaderTimeout:        10 * time.Second,
		IdleTimeout:          60 * time.Second,
		MaxBodySize:          4 << 20,
		MaxConns:             0,
		MaxConnsPerIP:        0,
		JWTCookie:            "wsd_token",
		SSEHeartbeat:         15 * time.Second,
		PresenceTTL:          30 * time.Second,
		LogFormat:            "text",
		LogLevel:             "info",
	}
}
