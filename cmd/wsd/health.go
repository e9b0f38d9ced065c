package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/config"
)

func newHealthCmd() *cobra.Command {
	var (
		adminAddr string
		target    string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health [--admin-address ADDR | --url URL]",
		Short: "Check that a running wsd serves: exit 0 if it does, 1 if not",
		Long: `Health asks a running wsd whether it serves, and exits 0 if it does and 1 if
not, with one line saying why: for a container's HEALTHCHECK, a load balancer's
probe script or a monitoring check.

With --admin-address it asks GET /readyz on that admin address, which answers
200 when every worker slot has a worker serving. With --url it asks GET on that
URL, and any 2xx answer is healthy. With neither, it reads the configuration as
"wsd serve" does (WSD_* environment variables and the file named by
WSD_CONFIG) and asks /readyz on its admin address if it has one, or else GET /
on its port. An address that listens on every interface (":9090",
"0.0.0.0:9090", "[::]:9090") is asked on loopback; a port with TLS is asked
over HTTPS without checking the certificate, which names the host rather
than the loopback address.

The exit status is 0 or 1 only, for a bad command line too: Docker reserves
the status 2 of a health check.

  HEALTHCHECK CMD ["wsd", "health"]                    (with WSD_ADMIN_ADDRESS set)
  wsd health --admin-address 127.0.0.1:9090
  wsd health --url http://127.0.0.1:3000/`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.NoArgs(cmd, args); err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&adminAddr, "admin-address", "", "ask GET /readyz on this admin `host:port` (default: the configuration's admin-address)")
	cmd.Flags().StringVar(&target, "url", "", "ask GET on this `URL` instead; any 2xx answer is healthy")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	cmd.MarkFlagsMutuallyExclusive("admin-address", "url")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitFailure, err: err}
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fail := func(err error) error { return &exitError{code: exitFailure, err: err} }
		if timeout <= 0 {
			return fail(fmt.Errorf("--timeout %s: must be positive", timeout))
		}
		probe, err := healthProbe(adminAddr, target, os.Environ())
		if err != nil {
			return fail(err)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		line, err := probe.check(ctx)
		if err != nil {
			return fail(err)
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), line)
		return err
	}
	return cmd
}

// probe is one health check: a GET of url.
type probe struct {
	url string
	// insecure skips the certificate check: for wsd's own TLS port, asked
	// on loopback, whose certificate names the host instead.
	insecure bool
}

// healthProbe returns what to ask: /readyz on adminAddr, or target, or
// from the configuration in env, /readyz on its admin address or / on its
// port.
func healthProbe(adminAddr, target string, env []string) (probe, error) {
	switch {
	case target != "":
		u, err := url.Parse(target)
		if err != nil {
			return probe{}, fmt.Errorf("--url: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return probe{}, fmt.Errorf("--url %q: must be an http:// or https:// URL", target)
		}
		return probe{url: u.String()}, nil
	case adminAddr != "":
		host, err := loopback(adminAddr)
		if err != nil {
			return probe{}, fmt.Errorf("--admin-address: %w", err)
		}
		return probe{url: "http://" + host + "/readyz"}, nil
	}
	cfg, err := config.Load(nil, env)
	if err != nil {
		return probe{}, fmt.Errorf("configuration: %w", err)
	}
	if cfg.AdminAddress != "" {
		host, err := loopback(cfg.AdminAddress)
		if err != nil {
			return probe{}, fmt.Errorf("admin-address: %w", err)
		}
		return probe{url: "http://" + host + "/readyz"}, nil
	}
	host, err := loopback(net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port)))
	if err != nil {
		return probe{}, fmt.Errorf("address: %w", err)
	}
	if cfg.TLSCert != "" {
		return probe{url: "https://" + host + "/", insecure: true}, nil
	}
	return probe{url: "http://" + host + "/"}, nil
}

// loopback returns the host:port to reach a server listening on hostPort:
// the same, or a loopback address in place of one that means every
// interface.
func loopback(hostPort string) (string, error) {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return "", err
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// check GETs p.url and returns a line describing a 2xx answer, or an error
// describing any other answer or the failure to get one.
func (p probe) check(ctx context.Context) (string, error) {
	tr := &http.Transport{
		Proxy:             nil, // a health check asks the server itself
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: p.insecure}, //nolint:gosec // wsd's own port, on loopback
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", p.url, err)
	}
	req.Header.Set("User-Agent", "wsd-health")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // Do's own message repeats the method and URL
		}
		return "", fmt.Errorf("GET %s: %w", p.url, err)
	}
	defer resp.Body.Close()
	// The first line of the body says why, as /readyz's does.
	first, _ := bufio.NewReader(io.LimitReader(resp.Body, 512)).ReadString('\n')
	first = strings.TrimSpace(first)
	line := fmt.Sprintf("GET %s: %s", p.url, resp.Status)
	if first != "" && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		line += ": " + first
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", errors.New(line)
	}
	return "healthy: " + line, nil
}
