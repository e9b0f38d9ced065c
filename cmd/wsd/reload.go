package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/config"
	"github.com/wsd-server/wsd/master"
)

// reloadPoll is how often `wsd reload` asks the admin address how its
// reload is going.
const reloadPoll = 100 * time.Millisecond

func newReloadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reload [--pid-file FILE] [--admin-address HOST:PORT]",
		Short: "Reload the running server's configuration and wait for the outcome",
		Long: `Reload sends SIGHUP to the running wsd master, which re-reads its configuration
and replaces its workers one at a time, and waits for the outcome.

The master is found through its pid file (--pid-file, which "wsd serve
--pid-file" writes) or its admin address (--admin-address, whose GET /status
names its pid). A setting not given as a flag comes from the WSD_*
environment and the file named by --config or WSD_CONFIG, as for "wsd serve"
(WSD_PID_FILE, pid_file...), so that a systemd unit's ExecReload sees what
its ExecStart saw.

With an admin address, reload reads GET /status before and after the signal
and exits 0 once every worker runs the configuration that the reload loaded,
or reports why not: exit 2 when the configuration does not load or validate
(the message names the setting; the old configuration keeps serving), exit 1
when a new worker fails to start (with its reason), when the reload does not
end within --timeout, or when the master cannot be reached.

With only a pid file, reload can tell that the signal was delivered to a
running wsd master, and nothing more: it exits 0 then, and the outcome is in
the server's log (and in systemctl status). Give the admin address to know it.

The signal needs the right to signal the master (its user, or root), so
reload runs on the server's host, in its PID namespace.`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.String("pid-file", "", "pid `file` of the running master")
	fs.String("admin-address", "", "`host:port` of the running master's admin address, for the outcome")
	fs.StringP("config", "c", "", "configuration `file` in which to look for pid_file and admin_address")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest to wait for the reload to finish")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		pidFile, adminAddr, err := reloadTarget(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), *timeout)
		defer cancel()
		return reload(ctx, cmd.OutOrStdout(), pidFile, adminAddr)
	}
	return cmd
}

// reloadTarget returns how to reach the master: the flags, completed from
// the environment and the configuration file. When a flag is given, a
// configuration that does not load (the very one being reloaded may be
// broken) is not needed, and ignored.
func reloadTarget(cmd *cobra.Command) (pidFile, adminAddr string, err error) {
	fs := cmd.Flags()
	pidFile, _ = fs.GetString("pid-file")
	adminAddr, _ = fs.GetString("admin-address")
	cfg, err := config.Load(fs, os.Environ())
	switch {
	case err == nil:
		pidFile, adminAddr = cfg.PidFile, cfg.AdminAddress
	case pidFile == "" && adminAddr == "":
		return "", "", &exitError{code: exitUsage, err: fmt.Errorf("finding the server: %w", err)}
	}
	if pidFile == "" && adminAddr == "" {
		return "", "", &exitError{code: exitUsage, err: errors.New("reload needs --pid-file or --admin-address (or pid_file or admin_address in the configuration) to find the server")}
	}
	return pidFile, adminAddr, nil
}

// reload signals the master found through pidFile or adminAddr and, with
// adminAddr, waits for the outcome until ctx ends.
func reload(ctx context.Context, out io.Writer, pidFile, adminAddr string) error {
	var before *master.Status
	pid := 0
	if adminAddr != "" {
		st, err := fetchStatus(ctx, adminAddr)
		if err != nil {
			return fmt.Errorf("reload: the admin address: %w", err)
		}
		before, pid = st, st.PID
	}
	if pidFile != "" {
		p, err := master.ReadPidFile(pidFile)
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if pid != 0 && p != pid {
			return fmt.Errorf("reload: %s names pid %d, but the master at %s is pid %d", pidFile, p, adminAddr, pid)
		}
		pid = p
	}
	if err := checkMaster(pid); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload: signalling pid %d: %w", pid, err)
	}
	if before == nil {
		fmt.Fprintf(out, "sent SIGHUP to the wsd master (pid %d); without an admin address the outcome is not known: see its log\n", pid)
		return nil
	}

	// The reload that answers this signal is the first to start after
	// the status read above: a reload under way then loaded its
	// configuration before, so the master queues another.
	tick := time.NewTicker(reloadPoll)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			why := "it is still running"
			if lastErr != nil {
				why = lastErr.Error()
			}
			return fmt.Errorf("reload: no outcome within the timeout: %s", why)
		case <-tick.C:
		}
		st, err := fetchStatus(ctx, adminAddr)
		if err != nil {
			lastErr = err // a binary upgrade re-opens the admin address
			continue
		}
		if st.PID != pid {
			return fmt.Errorf("reload: the master at %s is now pid %d, not %d: it restarted", adminAddr, st.PID, pid)
		}
		r := st.Reload
		if r == nil || r.ID <= before.Reloads || r.State == master.ReloadRunning {
			lastErr = nil
			continue
		}
		switch r.State {
		case master.ReloadInvalidConfig:
			return &exitError{code: exitUsage, err: fmt.Errorf("reload: invalid configuration, the server keeps the previous one: %s", r.Message)}
		case master.ReloadFailed:
			return fmt.Errorf("reload: failed: %s", r.Message)
		}
		if stale := staleWorkers(st, r.Generation); stale != "" {
			lastErr = errors.New(stale)
			continue // a worker restarting after a crash
		}
		fmt.Fprintf(out, "reloaded: %d workers run configuration generation %d (pid %d)\n", len(st.Workers), r.Generation, pid)
		return nil
	}
}

// staleWorkers says which worker does not serve generation gen, or "".
func staleWorkers(st *master.Status, gen uint64) string {
	for _, w := range st.Workers {
		if w.Generation != gen || !w.Ready {
			return fmt.Sprintf("the worker of slot %d (pid %d) is not serving generation %d", w.Slot, w.PID, gen)
		}
	}
	return ""
}

// checkMaster makes sure pid is a running wsd master rather than whatever
// reused the pid of a stale pid file, when /proc lets it tell.
func checkMaster(pid int) error {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("no process has pid %d: wsd is not running (a stale pid file?)", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil // no /proc, or not ours to read: the signal will tell
	}
	args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	for _, a := range args[1:] {
		if string(a) == "serve" {
			return nil
		}
	}
	return fmt.Errorf("pid %d is not a wsd master (%q): a stale pid file?", pid, bytes.Join(args, []byte(" ")))
}

// fetchStatus reads GET /status from the admin address.
func fetchStatus(ctx context.Context, addr string) (*master.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var st master.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	if st.PID <= 0 {
		return nil, fmt.Errorf("GET /status: no pid")
	}
	return &st, nil
}
