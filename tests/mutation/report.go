//go:build ignore

// report.go turns one gremlins log into the per-package report printed by
// tests/mutation/run: counts, the score, the score adjusted by
// equivalent.txt, and every mutant that lived, timed out or was not
// covered, each with the mutated source line ({{op}} marks the operator).
//
//	go run tests/mutation/report.go -pkg handshake/tls13 -log X.log \
//		-equivalent tests/mutation/equivalent.txt
//
// An equivalent.txt line reads
//
//	handshake/tls13 record.go:161 CONDITIONALS_BOUNDARY `if n {{<}} 5 {` — reason
//
// and matches a lived mutant of that package, file and mutator whose
// mutated line reads the same (blanks collapsed). The line number is only a
// hint for people, so entries survive edits elsewhere in the file; an entry
// without the quoted line falls back to matching the line number.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type mutant struct {
	status, mutator, file string
	line, col             int
	text                  string // the source line, operator marked
	equivalent            string // reason, when equivalent.txt lists it
}

func (m mutant) String() string {
	return fmt.Sprintf("%s:%d:%d %s `%s`", m.file, m.line, m.col, m.mutator, m.text)
}

var (
	logLine = regexp.MustCompile(`^\s*(KILLED|LIVED|NOT COVERED|TIMED OUT|NOT VIABLE|SKIPPED|RUNNABLE) ([A-Z_]+) at (\S+):(\d+):(\d+)\s*$`)
	ansi    = regexp.MustCompile("\x1b\\[[0-9;]*m")
	equLine = regexp.MustCompile("^(\\S+)\\s+(\\S+?):(\\d+)\\s+([A-Z_]+)\\s*(?:`([^`]*)`)?\\s*(?:—|--|-)?\\s*(.*)$")
)

func main() {
	pkg := flag.String("pkg", "", "package directory, relative to the module root")
	logf := flag.String("log", "", "gremlins output")
	equf := flag.String("equivalent", "", "equivalent mutants")
	elapsed := flag.Int("elapsed", 0, "seconds the run took")
	partial := flag.Bool("partial", false, "the run was stopped by its time budget")
	exclude := flag.String("exclude", "", "files left out of the run (regexp)")
	flag.Parse()

	lines := map[string][]string{}
	source := func(file string) []string {
		if l, ok := lines[file]; ok {
			return l
		}
		b, err := os.ReadFile(filepath.Join(*pkg, file))
		if err != nil {
			fatal(err)
		}
		lines[file] = strings.Split(string(b), "\n")
		return lines[file]
	}

	b, err := os.ReadFile(*logf)
	if err != nil {
		fatal(err)
	}
	var ms []mutant
	completed := false
	for _, l := range strings.Split(ansi.ReplaceAllString(string(b), ""), "\n") {
		if strings.Contains(l, "Mutation testing completed") {
			completed = true
		}
		g := logLine.FindStringSubmatch(l)
		if g == nil {
			continue
		}
		m := mutant{status: g[1], mutator: g[2], file: g[3]}
		m.line, _ = strconv.Atoi(g[4])
		m.col, _ = strconv.Atoi(g[5])
		m.text = mark(source(m.file), m.line, m.col)
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.line != b.line {
			return a.line < b.line
		}
		if a.col != b.col {
			return a.col < b.col
		}
		return a.mutator < b.mutator
	})

	used := map[int]bool{}
	type entry struct {
		file, mutator, text, reason string
		line, n                     int
	}
	var equ []entry
	if *equf != "" {
		f, err := os.Open(*equf)
		if err != nil {
			fatal(err)
		}
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			n++
			l := strings.TrimSpace(sc.Text())
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			g := equLine.FindStringSubmatch(l)
			if g == nil {
				fatal(fmt.Errorf("%s:%d: cannot parse %q", *equf, n, l))
			}
			if g[1] != *pkg {
				continue
			}
			line, _ := strconv.Atoi(g[3])
			equ = append(equ, entry{file: g[2], line: line, mutator: g[4], text: norm(g[5]), reason: g[6], n: n})
		}
		f.Close()
	}
	for i := range ms {
		m := &ms[i]
		if m.status != "LIVED" {
			continue
		}
		for _, e := range equ {
			if e.file != m.file || e.mutator != m.mutator {
				continue
			}
			if e.text != "" && e.text == norm(m.text) || e.text == "" && e.line == m.line {
				m.equivalent = e.reason
				used[e.n] = true
				break
			}
		}
	}

	count := map[string]int{}
	equivalent := 0
	for _, m := range ms {
		count[m.status]++
		if m.equivalent != "" {
			equivalent++
		}
	}
	k, l := count["KILLED"], count["LIVED"]
	pct := func(a, b int) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
	}
	state := "complete"
	if *partial {
		state = "PARTIAL: stopped by the time budget, the counts cover the mutants run so far"
	} else if !completed {
		state = "FAILED: gremlins did not finish (see the log)"
	}
	fmt.Printf("package %s: %s, %ds\n", *pkg, state, *elapsed)
	if *exclude != "" {
		fmt.Printf("  files left out (EXCLUDE): %s\n", *exclude)
	}
	fmt.Printf("  killed %d, lived %d (%d of them listed equivalent), timed out %d, not covered %d, not viable %d\n",
		k, l, equivalent, count["TIMED OUT"], count["NOT COVERED"], count["NOT VIABLE"])
	fmt.Printf("  score killed/(killed+lived): %s   adjusted for equivalent.txt: %s\n",
		pct(k, k+l), pct(k, k+l-equivalent))
	section := func(title string, keep func(mutant) bool) {
		var out []string
		for _, m := range ms {
			if keep(m) {
				s := "    " + m.String()
				if m.equivalent != "" {
					s += " — " + m.equivalent
				}
				out = append(out, s)
			}
		}
		if len(out) > 0 {
			fmt.Printf("  %s (%d):\n%s\n", title, len(out), strings.Join(out, "\n"))
		}
	}
	section("LIVED, no test notices", func(m mutant) bool { return m.status == "LIVED" && m.equivalent == "" })
	section("LIVED, listed equivalent", func(m mutant) bool { return m.status == "LIVED" && m.equivalent != "" })
	section("TIMED OUT", func(m mutant) bool { return m.status == "TIMED OUT" })
	section("NOT COVERED", func(m mutant) bool { return m.status == "NOT COVERED" })
	if completed && !*partial {
		for _, e := range equ {
			if !used[e.n] {
				fmt.Printf("  stale equivalent.txt:%d (no lived mutant matches): %s:%d %s `%s`\n", e.n, e.file, e.line, e.mutator, e.text)
			}
		}
	}
	if !completed && !*partial {
		os.Exit(1)
	}
}

// mark returns source line n with the operator at column col marked
// {{op}}, leading and trailing blanks removed.
func mark(src []string, n, col int) string {
	if n < 1 || n > len(src) {
		return "?"
	}
	l := src[n-1]
	i := col - 1 // gremlins counts bytes from 1
	if i < 0 || i > len(l) {
		return strings.TrimSpace(l)
	}
	j := i
	for j < len(l) && strings.ContainsRune("+-*/%<>=!&|^", rune(l[j])) {
		j++
	}
	return strings.TrimSpace(l[:i] + "{{" + l[i:j] + "}}" + l[j:])
}

func norm(s string) string { return strings.Join(strings.Fields(s), " ") }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(2)
}
