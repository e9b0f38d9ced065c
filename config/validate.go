package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9"
	"github.com/wsd-server/wsd/internal/jwtkey"
)

// A FieldError reports one setting with a bad value.
type FieldError struct {
	// Field names the setting as the user spelled it: the flag name
	// ("max-msg-size") for errors from Validate, the variable name
	// (WSD_MAX_MSG_SIZE) or the file key (max_msg_size) for errors from Load.
	Field string
	// Value is the offending value: as parsed for Validate, as written
	// for Load.
	Value any
	// Reason says what is wrong, phrased to follow "field = value: ".
	Reason string
}

// Error returns "field = value: reason", with string values quoted.
func (e *FieldError) Error() string {
	if s, ok := e.Value.(string); ok {
		return fmt.Sprintf("%s = %q: %s", e.Field, s, e.Reason)
	}
	return fmt.Sprintf("%s = %v: %s", e.Field, e.Value, e.Reason)
}

// Limits enforced by Validate.
const (
	maxMsgSizeLimit = 1 << 40 // 1 TiB
	// The specification stores the ping timeout in an unsigned char.
	maxTimeout = 255
	// Below one small frame's worth, every connection would be closed at
	// its first write.
	minBackpressure = 1024
	minHeaderSize   = 1024
	maxHeaderSize   = 1 << 20
	// minWorkerTimeout is the shortest heartbeat timeout, see Validate.
	minWorkerTimeout = time.Second
	// maxProcesses bounds the worker count: the master holds several
	// descriptors per worker, and more workers than this is a typo.
	maxProcesses = 1024
	// maxHistorySize bounds the messages a channel keeps: the whole
	// history is bounded in bytes anyway (wsext.DefaultHistoryMaxBytes).
	maxHistorySize = 100000
	// minJWTSecret is the shortest HS256 key, the hash's size (RFC 7518
	// section 3.2).
	minJWTSecret = 32
	// minPresenceTTL leaves the refresh (a third of it) time to reach
	// Redis before the entries expire.
	minPresenceTTL = time.Second
	// minSSEHeartbeat keeps a typo from making every stream spin.
	minSSEHeartbeat = 100 * time.Millisecond
)

// Validate checks every setting and returns nil or every problem found,
// joined with [errors.Join], each a [*FieldError] naming the flag. Use
// [errors.As] to pick one out. Validate reads the file system for the public
// directory and the TLS key pair, so a configuration valid on one host may
// not be on another.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	between := func(field string, v, lo, hi int64) {
		if v < lo || v > hi {
			bad(field, v, "must be between %d and %d", lo, hi)
		}
	}
	atLeast := func(field string, v, lo int64) {
		switch {
		case v >= lo:
		case lo == 0:
			bad(field, v, "must not be negative")
		case lo == 1:
			bad(field, v, "must be positive")
		default:
			bad(field, v, "must be at least %d", lo)
		}
	}

	if err := checkHost(c.Address); err != nil {
		bad("address", c.Address, "%v", err)
	}
	between("port", int64(c.Port), 1, 65535)
	atLeast("processes", int64(c.Processes), 0)
	if c.Processes > maxProcesses {
		bad("processes", c.Processes, "must be at most %d (0 runs one per available CPU)", maxProcesses)
	}
	atLeast("threads", int64(c.Threads), 0)

	if c.MaxMsgSize > maxMsgSizeLimit {
		bad("max-msg-size", c.MaxMsgSize, "must be at most %d (1 TiB)", maxMsgSizeLimit)
	}
	atLeast("max-msg-size", c.MaxMsgSize, 1)
	between("timeout", int64(c.Timeout), 0, maxTimeout)
	if c.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", c.ShutdownTimeout, "must be positive")
	}
	// Workers beat several times per timeout; below a second the check
	// would kill workers that a busy machine merely paused.
	if c.WorkerTimeout != 0 && c.WorkerTimeout < minWorkerTimeout {
		bad("worker-timeout", c.WorkerTimeout, "must be 0 (off) or at least %s", minWorkerTimeout)
	}
	if c.DrainPeriod < 0 {
		bad("drain-period", c.DrainPeriod, "must be 0 (close at once) or positive")
	}

	between("compression-level", int64(c.CompressionLevel), 1, 9)
	atLeast("compression-threshold", int64(c.CompressionThreshold), 0)
	atLeast("max-backpressure", int64(c.MaxBackpressure), minBackpressure)
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			bad("allowed-origins", o, "%v", err)
		}
	}
	for _, p := range c.Subprotocols {
		if !isToken(p) {
			bad("subprotocols", p, "must be an HTTP token: letters, digits and !#$%%&'*+-.^_`|~")
		}
	}

	between("max-header-size", int64(c.MaxHeaderSize), minHeaderSize, maxHeaderSize)
	if c.HeaderTimeout <= 0 {
		bad("header-timeout", c.HeaderTimeout, "must be positive")
	}
	if c.IdleTimeout <= 0 {
		bad("idle-timeout", c.IdleTimeout, "must be positive")
	}
	atLeast("max-body-size", int64(c.MaxBodySize), 1)
	atLeast("max-conns", int64(c.MaxConns), 0) // 0: from the open-file limit
	atLeast("max-conns-per-ip", int64(c.MaxConnsPerIP), 0)

	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		bad("tls-key", c.TLSKey, "must be set when tls-cert is")
	case c.TLSCert == "" && c.TLSKey != "":
		bad("tls-cert", c.TLSCert, "must be set when tls-key is")
	case c.TLSCert != "":
		certErr, keyErr := checkFile(c.TLSCert), checkFile(c.TLSKey)
		if certErr != nil {
			bad("tls-cert", c.TLSCert, "%v", certErr)
		}
		if keyErr != nil {
			bad("tls-key", c.TLSKey, "%v", keyErr)
		}
		if certErr == nil && keyErr == nil {
			// Loading the pair here turns a bad certificate into a
			// configuration error at start or reload, not a worker crash.
			if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
				bad("tls-cert", c.TLSCert, "cannot be used with tls-key %q: %v", c.TLSKey, err)
			}
		}
	}

	atLeast("history-size", int64(c.HistorySize), 0)
	if c.HistorySize > maxHistorySize {
		bad("history-size", c.HistorySize, "must be at most %d", maxHistorySize)
	}
	if c.HistoryTTL < 0 {
		bad("history-ttl", c.HistoryTTL, "must be 0 (no age limit) or positive")
	}
	if c.PresenceTTL < minPresenceTTL {
		bad("presence-ttl", c.PresenceTTL, "must be at least %s", minPresenceTTL)
	}
	if c.Redis != "" {
		if err := checkRedis(c.Redis); err != nil {
			bad("redis", redactURL(c.Redis), "%v", err)
		}
	}
	if strings.ContainsFunc(c.PublishToken, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		// The token is a secret: name the problem, not the value.
		bad("publish-token", "<redacted>", "must not contain spaces or control characters")
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < minJWTSecret {
		bad("jwt-secret", "<redacted>", "must be at least %d bytes (RFC 7518 section 3.2)", minJWTSecret)
	}
	if c.JWTPublicKey != "" {
		if err := checkFile(c.JWTPublicKey); err != nil {
			bad("jwt-public-key", c.JWTPublicKey, "%v", err)
		} else if _, err := jwtkey.Load(c.JWTPublicKey); err != nil {
			bad("jwt-public-key", c.JWTPublicKey, "%v", err)
		}
	}
	if c.JWTCookie != "" && !isToken(c.JWTCookie) {
		bad("jwt-cookie", c.JWTCookie, "must be an HTTP token: letters, digits and !#$%%&'*+-.^_`|~")
	}
	if c.SSEHeartbeat < minSSEHeartbeat {
		bad("sse-heartbeat", c.SSEHeartbeat, "must be at least %s", minSSEHeartbeat)
	}

	if c.Public != "" {
		if fi, err := os.Stat(c.Public); err != nil {
			bad("public", c.Public, "%v", statReason(err))
		} else if !fi.IsDir() {
			bad("public", c.Public, "is not a directory")
		}
	}
	if c.AdminAddress != "" {
		if err := checkHostPort(c.AdminAddress); err != nil {
			bad("admin-address", c.AdminAddress, "%v", err)
		}
	}
	if c.PidFile != "" {
		if fi, err := os.Stat(filepath.Dir(c.PidFile)); err != nil {
			bad("pid-file", c.PidFile, "its directory: %v", statReason(err))
		} else if !fi.IsDir() {
			bad("pid-file", c.PidFile, "its directory is not a directory")
		}
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format", c.LogFormat, "must be text or json")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", c.LogLevel, "must be debug, info, warn or error")
	}
	return errors.Join(errs...)
}

// checkHost accepts the hosts wsd can bind without a resolver: an IP
// literal, "" for every address, or "localhost".
func checkHost(h string) error {
	if h == "" || h == "localhost" {
		return nil
	}
	if _, err := netip.ParseAddr(h); err != nil {
		return errors.New(`must be an IP address such as 0.0.0.0 or ::1, "localhost" or empty`)
	}
	return nil
}

func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return errors.New(`must be host:port, such as 127.0.0.1:9090 or [::1]:9090`)
	}
	if err := checkHost(host); err != nil {
		return fmt.Errorf("host %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("port must be between 1 and 65535")
	}
	return nil
}

// originPattern is scheme://host[:port], where host may start with "*." to
// allow every subdomain.
var originPattern = regexp.MustCompile(`^([a-z][a-z0-9+.-]*)://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$`)

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// form RFC 6455 requires of a subprotocol name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= 0x80 || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	m := originPattern.FindStringSubmatch(o)
	if m == nil {
		return errors.New(`must be "*" or scheme://host[:port] in lower case, such as https://example.com or https://*.example.com`)
	}
	if m[5] != "" {
		if n, _ := strconv.Atoi(m[5][1:]); n < 1 || n > 65535 {
			return errors.New("port must be between 1 and 65535")
		}
	}
	return nil
}

func checkRedis(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return errors.New("must be a URL such as redis://host:6379/0 or rediss://host:6380/0")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("port must be between 1 and 65535")
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if _, err := strconv.ParseUint(db, 10, 16); err != nil {
			return errors.New("database must be a number, as in redis://host:6379/0")
		}
	}
	// The client's own parser has the last word, on query options too.
	if _, err := redis.ParseURL(s); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "redis: "))
	}
	return nil
}

// redactURL hides a password in a Redis URL before it is printed, and
// otherwise shows the URL exactly as written.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return "<redacted>"
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	return s
}

func checkFile(name string) error {
	fi, err := os.Stat(name)
	if err != nil {
		return statReason(err)
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// statReason phrases a Stat error without repeating the path, which the
// FieldError already shows.
func statReason(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("does not exist")
	case errors.Is(err, os.ErrPermission):
		return errors.New("permission denied")
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
