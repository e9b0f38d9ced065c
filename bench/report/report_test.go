package report

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplice(t *testing.T) {
	const sec = "NEW\n"
	tests := []struct {
		name, doc, want string
		wantErr         bool
	}{
		{"no markers", "# B\n\nhand text\n", "# B\n\nhand text\n\n" + BeginMarker + "\nNEW\n" + EndMarker + "\n", false},
		{"empty", "", BeginMarker + "\nNEW\n" + EndMarker + "\n", false},
		{"replace", "# B\nbefore\n" + BeginMarker + "\nOLD\nOLD\n" + EndMarker + "\nafter\n",
			"# B\nbefore\n" + BeginMarker + "\nNEW\n" + EndMarker + "\nafter\n", false},
		{"replace at end", "x\n" + BeginMarker + EndMarker, "x\n" + BeginMarker + "\nNEW\n" + EndMarker, false},
		{"only begin", "x\n" + BeginMarker + "\n", "", true},
		{"only end", "x\n" + EndMarker + "\n", "", true},
		{"reversed", EndMarker + "\n" + BeginMarker + "\n", "", true},
		{"two sections", BeginMarker + EndMarker + "\n" + BeginMarker + EndMarker, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Splice([]byte(tt.doc), []byte(sec))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Splice error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrMarkers) {
					t.Errorf("error %v is not ErrMarkers", err)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("Splice =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestSpliceAddsNewline(t *testing.T) {
	got, err := Splice(nil, []byte("no newline"))
	if err != nil || string(got) != BeginMarker+"\nno newline\n"+EndMarker+"\n" {
		t.Fatalf("Splice = %q, %v", got, err)
	}
}

func FuzzSplice(f *testing.F) {
	f.Add([]byte("# B\n"+BeginMarker+"\nold\n"+EndMarker+"\ntail\n"), []byte("new\n"))
	f.Add([]byte("plain"), []byte(""))
	f.Fuzz(func(t *testing.T, doc, sec []byte) {
		if bytes.Contains(sec, []byte(BeginMarker)) || bytes.Contains(sec, []byte(EndMarker)) {
			return
		}
		out, err := Splice(doc, sec)
		if err != nil {
			return
		}
		// Splicing is idempotent and keeps the text outside the markers.
		again, err := Splice(out, sec)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second Splice = %q, %v; first %q", again, err, out)
		}
		if i := bytes.Index(doc, []byte(BeginMarker)); i >= 0 && !bytes.HasPrefix(out, doc[:i]) {
			t.Fatalf("text before the markers changed: %q -> %q", doc, out)
		}
	})
}

func TestReplaceSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "BENCHMARKS.md")
	if err := ReplaceSection(path, []byte("first\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "# Benchmarks\n\n" + BeginMarker + "\nfirst\n" + EndMarker + "\n"; string(b) != want {
		t.Fatalf("new file = %q, want %q", b, want)
	}
	hand := string(b) + "\n## Hand-written\n\nkeep me\n"
	if err := os.WriteFile(path, []byte(hand), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSection(path, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if strings.Contains(string(b), "first") || !strings.Contains(string(b), "second") || !strings.HasSuffix(string(b), "keep me\n") {
		t.Fatalf("replaced file = %q", b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode after replace: %v, %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	if err := os.WriteFile(path, []byte(BeginMarker+"\nbroken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSection(path, []byte("x")); !errors.Is(err, ErrMarkers) {
		t.Errorf("ReplaceSection on a broken file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != BeginMarker+"\nbroken" {
		t.Errorf("broken file was modified: %q", b)
	}
}

func sampleDocument() *Document {
	return &Document{
		Generated: time.Date(2025, 11, 24, 18, 0, 0, 0, time.UTC),
		Machine:   Machine{CPUs: 2, Model: "AMD EPYC", Kernel: "6.1.0", MemTotal: 24 << 30, Go: "go1.26.8"},
		Test:      "wsd", Base: "baseline", Runs: 3,
		Commands: []string{"wsd-bench suite --out BENCHMARKS.md"},
		Rows: []Row{
			{Scenario: "echo 64 B × 100 conns", Metric: "msg/s", Test: 75000, Base: 69000, Ratio: 75000.0 / 69000,
				Target: "≥ 1.0×", Met: "yes", TestRuns: []float64{74000, 75000, 76000}, BaseRuns: []float64{69000, 68000, 70000}},
			{Scenario: "idle | 10 000", Metric: "KB/conn", Test: 1.9, Base: 14, Ratio: 1.9 / 14, Target: "≤ 2 KB", Met: "no", Note: "1 run failed"},
			{Scenario: "http", Metric: "req/s", Test: math.NaN(), Base: 68000, Ratio: math.NaN()},
		},
		Notes: []string{"A note."},
		Estimate: &Estimate{Conns: 1000000, TestPerConn: 1900, BasePerConn: 14000, KernelPerConn: 7000, Processes: 2,
			TestStartRSS: 25e6, BaseStartRSS: 8e6},
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sampleDocument().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{
		"2 CPUs (AMD EPYC), 24.0 GiB RAM, Linux 6.1.0, go1.26.8",
		"median of 3 runs",
		"| scenario | metric | wsd | baseline | ratio | target | met? |",
		"| echo 64 B × 100 conns | msg/s | 75.0 k | 69.0 k | 1.09× | ≥ 1.0× | ✅ yes |",
		`| idle \| 10 000 | KB/conn | 1.90 | 14.0 | 0.14× | ≤ 2 KB | ❌ no (1 run failed) |`,
		"| http | req/s | — | 68.0 k | — | — | — |",
		"74.0 k / 75.0 k / 76.0 k",
		"```sh\nwsd-bench suite --out BENCHMARKS.md\n```",
		"A note.",
		"### 1 000 000 connections, on paper",
		"| user-space memory | N × idle RSS slope per connection | 1.9 GB | 14.0 GB |",
		"3500 B", // measured kernel bytes per socket: 7000 ÷ 2
		"| file descriptors | N, plus ~64 per process | 1 000 128 | 1 000 128 |",
		"`LimitNOFILE=1048576`",
		"| start-up memory | P × RSS before any connection (measured with P = 1) | 50 MB | 16 MB |",
		"25 000 pings a second",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("markdown lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, BeginMarker) {
		t.Error("markdown contains the markers itself")
	}
}

func TestEstimateWithoutKernelFigure(t *testing.T) {
	d := sampleDocument()
	d.Estimate.KernelPerConn = math.NaN()
	var b bytes.Buffer
	d.WriteMarkdown(&b)
	if !strings.Contains(b.String(), "assumed 3584 B") {
		t.Errorf("estimate without a kernel figure:\n%s", b.String())
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, "wsd", "baseline", sampleDocument().Rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines:\n%s", len(lines), b.String())
	}
	if !strings.HasPrefix(lines[0], "scenario") || !strings.Contains(lines[0], "wsd") || !strings.Contains(lines[0], "met?") {
		t.Errorf("header %q", lines[0])
	}
	if !strings.Contains(lines[1], "1.09×") || !strings.Contains(lines[2], "no (1 run failed)") {
		t.Errorf("table:\n%s", b.String())
	}
	// Columns line up: "ratio" starts at the same character as each ratio.
	col := len([]rune(lines[0][:strings.Index(lines[0], "ratio")]))
	if !strings.HasPrefix(string([]rune(lines[1])[col:]), "1.09×") {
		t.Errorf("misaligned table:\n%s", b.String())
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{FormatRatio(1.234), "1.23×"}, {FormatRatio(math.NaN()), "—"}, {FormatRatio(math.Inf(1)), "∞"},
		{FormatRatio(250), "250×"}, {FormatValue(math.NaN()), "—"}, {FormatValue(446e6), "446 M"},
		{group(1000000), "1 000 000"}, {group(999), "999"}, {group(-1234), "-1 234"},
		{bytesText(1.9e9), "1.9 GB"}, {bytesText(5e6), "5 MB"}, {bytesText(1500), "2 KB"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestDetectMachine(t *testing.T) {
	m := DetectMachine()
	if m.CPUs < 1 || m.Go == "" || !strings.Contains(m.String(), "CPUs") {
		t.Errorf("DetectMachine = %+v", m)
	}
	if _, err := os.Stat("/proc/cpuinfo"); err == nil && m.Kernel == "" {
		t.Errorf("no kernel release read: %+v", m)
	}
}

func TestBeforeColumn(t *testing.T) {
	tests := []struct {
		name        string
		before      string
		header      []string // of the results table
		want, never []string
	}{
		{"without", "", []string{"scenario", "metric", "wsd", "baseline", "ratio", "target", "met?"}, []string{
			"| scenario | metric | wsd | baseline | ratio | target | met? |\n|---|---|--:|--:|--:|---|---|\n",
			"| echo 64 B × 100 conns | msg/s | 75.0 k | 69.0 k | 1.09× | ≥ 1.0× | ✅ yes |",
			"| scenario | metric | wsd runs | baseline runs |\n|---|---|---|---|\n",
			"| echo 64 B × 100 conns | msg/s | 74.0 k / 75.0 k / 76.0 k | 69.0 k / 68.0 k / 70.0 k |\n",
			"the two servers run one after the other (in ABBA order",
			"Ratio is wsd ÷ baseline,",
		}, []string{"wsd before", "÷ before"}},
		{"with", "wsd before", []string{"scenario", "metric", "wsd", "baseline", "wsd before", "ratio", "wsd ÷ before", "target", "met?"}, []string{
			"| scenario | metric | wsd | baseline | wsd before | ratio | wsd ÷ before | target | met? |\n|---|---|--:|--:|--:|--:|--:|---|---|\n",
			"| echo 64 B × 100 conns | msg/s | 75.0 k | 69.0 k | 50.0 k | 1.09× | 1.50× | ≥ 1.0× | ✅ yes |",
			`| idle \| 10 000 | KB/conn | 1.90 | 14.0 | — | 0.14× | — | ≤ 2 KB | ❌ no (1 run failed) |`,
			"| http | req/s | — | 68.0 k | — | — | — | — | — |",
			"| scenario | metric | wsd runs | baseline runs | wsd before runs |\n|---|---|---|---|---|\n",
			"| echo 64 B × 100 conns | msg/s | 74.0 k / 75.0 k / 76.0 k | 69.0 k / 68.0 k / 70.0 k | 50.0 k / 49.0 k |\n",
			"| http | req/s | — | — | — |\n",
			"the three servers run one after the other (wsd, baseline, wsd before, then the other way round",
			"wsd ÷ before is wsd ÷ wsd before",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := sampleDocument()
			if tt.before != "" {
				d.Before = tt.before
				d.Rows[0].Before, d.Rows[0].BeforeRatio, d.Rows[0].BeforeRuns = 50000, 1.5, []float64{50000, 49000}
				for i := 1; i < len(d.Rows); i++ {
					d.Rows[i].Before, d.Rows[i].BeforeRatio = math.NaN(), math.NaN()
				}
			}
			var b bytes.Buffer
			if err := d.WriteMarkdown(&b); err != nil {
				t.Fatal(err)
			}
			s := b.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("markdown lacks %q:\n%s", w, s)
				}
			}
			for _, n := range tt.never {
				if strings.Contains(s, n) {
					t.Errorf("markdown contains %q:\n%s", n, s)
				}
			}
			// Every line of the results table has a cell per column.
			table := s[strings.Index(s, "| scenario | metric |"):]
			table = table[:strings.Index(table, "\n\n")]
			for _, line := range strings.Split(table, "\n") {
				if n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") - 1; n != len(tt.header) {
					t.Errorf("%d cells, want %d: %s", n, len(tt.header), line)
				}
			}

			var tb bytes.Buffer
			if err := d.WriteTable(&tb); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(tb.String()), "\n")
			if got := regexp.MustCompile(`\s{2,}`).Split(lines[0], -1); !slices.Equal(got, tt.header) {
				t.Errorf("table header %q, want %q", got, tt.header)
			}
			// The ratio columns line up with their values.
			for col, val := range map[string]string{"ratio": "1.09×", "wsd ÷ before": "1.50×"} {
				i := strings.Index(lines[0], col)
				if i < 0 {
					continue
				}
				start := len([]rune(lines[0][:i]))
				if !strings.HasPrefix(string([]rune(lines[1])[start:]), val) {
					t.Errorf("column %q misaligned:\n%s", col, tb.String())
				}
			}
		})
	}
}
