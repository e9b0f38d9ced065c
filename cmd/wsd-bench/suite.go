package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wsd-server/wsd/bench/report"
	"github.com/wsd-server/wsd/bench/suite"
)

type suiteFlags struct {
	wsd, baseline string
	before        string
	wsdFlags      []string
	runs          int
	duration      time.Duration
	scenarios     []string
	out           string
	markdown      string
	serverLog     string
	strict        bool
}

func newSuiteCmd() *cobra.Command {
	var fl suiteFlags
	cmd := &cobra.Command{
		Use:   "suite",
		Short: "Run the standard set against wsd and the baseline, one after the other, and compare",
		Long: "suite starts `wsd serve --processes 1` and wsd-baseline, one at a time, each on a free 127.0.0.1\n" +
			"port, runs every scenario against each (--runs times, alternating), and prints the medians with\n" +
			"their ratios and targets. --before adds an earlier wsd build, run the same way, in a column of its\n" +
			"own with the ratio wsd ÷ before. With --out it rewrites the part of a markdown file between\n" +
			report.BeginMarker + " and " + report.EndMarker + " (created or appended if missing).\n\n" +
			"Scenarios: " + scenarioNames(suite.Standard(0)),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSuite(cmd, fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.wsd, "wsd", "", "wsd binary (default: ./bin/wsd, then wsd next to wsd-bench, else built with go build)")
	f.StringVar(&fl.baseline, "baseline", "", "wsd-baseline binary (default: found or built like --wsd)")
	f.StringVar(&fl.before, "before", "", "a wsd binary built from an earlier commit, run like --wsd and shown as \"wsd before\" (default: none)")
	f.StringArrayVar(&fl.wsdFlags, "wsd-flag", nil, "extra flag for wsd serve (repeatable), e.g. --wsd-flag=--log-level=warn")
	f.IntVar(&fl.runs, "runs", 3, "runs per scenario and server (the table shows medians)")
	f.DurationVar(&fl.duration, "duration", suite.DefaultDuration, "measured time of each run")
	f.StringSliceVar(&fl.scenarios, "scenarios", nil, "run only these scenarios (comma-separated names)")
	f.StringVar(&fl.out, "out", "", "markdown file whose bench section is rewritten (e.g. BENCHMARKS.md)")
	f.StringVar(&fl.markdown, "markdown", "", "write the generated markdown alone to this file ('-': standard output)")
	f.StringVar(&fl.serverLog, "server-log", "", "append the servers' output to this file")
	f.BoolVar(&fl.strict, "strict", false, "exit with an error if a target is not met")
	return cmd
}

func scenarioNames(scs []suite.Scenario) string {
	names := make([]string, len(scs))
	for i, s := range scs {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

func runSuite(cmd *cobra.Command, fl suiteFlags) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	scenarios := suite.Standard(fl.duration)
	if len(fl.scenarios) > 0 {
		var picked []suite.Scenario
		for _, name := range fl.scenarios {
			i := slices.IndexFunc(scenarios, func(s suite.Scenario) bool { return s.Name == name })
			if i < 0 {
				return fmt.Errorf("unknown scenario %q; known: %s", name, scenarioNames(scenarios))
			}
			picked = append(picked, scenarios[i])
		}
		scenarios = picked
	}

	tmp, err := os.MkdirTemp("", "wsd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	wsdPath, err := findBinary(ctx, fl.wsd, "wsd", tmp, out)
	if err != nil {
		return err
	}
	basePath, err := findBinary(ctx, fl.baseline, "wsd-baseline", tmp, out)
	if err != nil {
		return err
	}
	var beforePath string
	if fl.before != "" {
		if beforePath, err = findBinary(ctx, fl.before, "wsd-before", tmp, out); err != nil {
			return err
		}
	}
	var serverLog io.Writer
	if fl.serverLog != "" {
		f, err := os.OpenFile(fl.serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		serverLog = f
	}
	wsdCommand := func(path string) []string {
		return append([]string{path, "serve", "--address", "{address}", "--port", "{port}", "--processes", "1"}, fl.wsdFlags...)
	}
	cfg := suite.Config{
		Test: suite.Server{Name: "wsd", Log: serverLog, Command: wsdCommand(wsdPath)},
		Base: suite.Server{Name: "baseline", Log: serverLog, Command: []string{basePath,
			"--address", "{address}", "--port", "{port}"}},
		Scenarios: scenarios,
		Runs:      fl.runs,
		Out:       out,
		TTY:       isTTY(out),
	}
	if beforePath != "" {
		cfg.Before = &suite.Server{Name: "wsd before", Log: serverLog, Command: wsdCommand(beforePath)}
	}
	res, err := suite.Execute(ctx, cfg)
	if err != nil {
		return err
	}
	doc := res.Document(invocation(), suite.StandardChecks())
	rows := doc.Rows
	fmt.Fprintf(out, "\nmedians of %d runs, %s\n\n", cfg.Runs, res.Finished.Sub(res.Started).Round(time.Second))
	if err := doc.WriteTable(out); err != nil {
		return err
	}

	var md bytes.Buffer
	if err := doc.WriteMarkdown(&md); err != nil {
		return err
	}
	switch fl.markdown {
	case "":
	case "-":
		out.Write(md.Bytes())
	default:
		if err := os.WriteFile(fl.markdown, md.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if fl.out != "" {
		if err := report.ReplaceSection(fl.out, md.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nwrote the bench section of %s\n", fl.out)
	}

	var problems []string
	for _, r := range rows {
		if strings.Contains(r.Note, "failed") {
			problems = append(problems, r.Scenario+": "+r.Note)
		}
		if fl.strict && r.Met == "no" {
			problems = append(problems, r.Scenario+" "+r.Metric+": target "+r.Target+" not met")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(slices.Compact(problems), "\n"))
	}
	return nil
}

// invocation is the command line as a user would type it.
func invocation() string {
	args := append([]string{"wsd-bench"}, os.Args[1:]...)
	return strings.Join(args, " ")
}

// findBinary returns flagPath if set; otherwise ./bin/NAME, NAME next to
// this executable, or a fresh `go build` of ./cmd/NAME into dir.
func findBinary(ctx context.Context, flagPath, name, dir string, log io.Writer) (string, error) {
	if flagPath != "" {
		p, err := exec.LookPath(flagPath)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", strings.TrimPrefix(name, "wsd-"), err)
		}
		return shortPath(p)
	}
	candidates := []string{filepath.Join("bin", name)}
	if self, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(self), name))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return shortPath(c)
		}
	}
	target := filepath.Join(dir, name)
	fmt.Fprintf(log, "building %s (go build -o %s github.com/wsd-server/wsd/cmd/%s)\n", name, target, name)
	build := exec.CommandContext(ctx, "go", "build", "-o", target, "github.com/wsd-server/wsd/cmd/"+name)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("no %s binary (looked in %s) and go build failed: %w\n%s",
			name, strings.Join(candidates, ", "), err, out)
	}
	return target, nil
}

// shortPath returns p as ./relative when it is under the working directory,
// which keeps the commands in BENCHMARKS.md free of one machine's paths, and
// absolute otherwise.
func shortPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	wd, err := os.Getwd()
	if err != nil {
		return abs, nil
	}
	rel, err := filepath.Rel(wd, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return abs, nil
	}
	return "./" + rel, nil
}
