package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// cpuCategories are what a proxy's CPU time is spent on, in the order of the report.
var cpuCategories = []string{
	"HTTP: parsing, headers, framing",
	"TLS encryption",
	"copying memory",
	"the proxy's own code",
	"filters (regular expressions)",
	"read syscalls",
	"write syscalls",
	"waiting for the network (epoll)",
	"threads sleeping and waking (futex)",
	"goroutine scheduling",
	"allocation",
	"garbage collection",
	"other",
}

// classify names the category of one profiled stack, leaf first: the runtime's own work by
// what it is for, the rest by the package of the innermost frame outside the runtime and
// the basic packages.
func classify(stack []string) string {
	leaf := stack[0]
	has := func(prefixes ...string) bool {
		for _, f := range stack {
			for _, p := range prefixes {
				if strings.HasPrefix(f, p) {
					return true
				}
			}
		}
		return false
	}
	syscall := strings.Contains(leaf, "Syscall")
	switch {
	case has("runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcStart",
		"runtime.gcMarkDone", "runtime.gcMarkTermination"):
		return "garbage collection"
	case leaf == "runtime.futex" || has("runtime.futexsleep", "runtime.futexwakeup"):
		return "threads sleeping and waking (futex)"
	case has("runtime.netpoll"):
		return "waiting for the network (epoll)"
	case syscall && has("internal/poll.(*FD).Write", "internal/poll.(*FD).Writev"):
		return "write syscalls"
	case syscall && has("internal/poll.(*FD).Read"):
		return "read syscalls"
	case has("runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.goready", "runtime.newproc", "runtime.gopark",
		"runtime.ready", "runtime.wakep", "runtime.startm", "runtime.stopm", "runtime.mcall", "runtime.goexit0"):
		return "goroutine scheduling"
	case has("runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice"):
		return "allocation"
	case strings.HasPrefix(leaf, "runtime.memmove") || strings.HasPrefix(leaf, "runtime.memclr"):
		return "copying memory"
	}
	for _, f := range stack {
		// The package of a function name: up to the first dot after the last slash.
		pkg, _, _ := strings.Cut(f, ".")
		if i := strings.LastIndexByte(f, '/'); i >= 0 {
			before, _, _ := strings.Cut(f[i:], ".")
			pkg = f[:i+len(before)]
		}
		switch {
		case basicPackages[pkg] || strings.HasPrefix(pkg, "internal/") || strings.HasPrefix(pkg, "runtime"):
			continue
		case strings.HasPrefix(pkg, "crypto/") || strings.HasPrefix(pkg, "vendor/golang.org/x/crypto"):
			return "TLS encryption"
		case pkg == "regexp" || pkg == "regexp/syntax":
			return "filters (regular expressions)"
		case strings.HasPrefix(pkg, "net/http") || pkg == "net/textproto" || strings.Contains(pkg, "golang.org/x/net/http"):
			return "HTTP: parsing, headers, framing"
		case strings.HasPrefix(pkg, "github.com/api-access-injector/") || strings.HasPrefix(pkg, "k8s.io/"):
			return "the proxy's own code"
		}
		return "other"
	}
	return "other"
}

// basicPackages are skipped when a stack is attributed to the package that did the work.
var basicPackages = map[string]bool{"sync": true, "sync/atomic": true, "strings": true, "bytes": true, "bufio": true, "io": true,
	"strconv": true, "unicode": true, "unicode/utf8": true, "errors": true, "context": true, "time": true, "sort": true,
	"slices": true, "maps": true, "math": true, "fmt": true, "reflect": true, "net": true, "net/url": true, "os": true,
	"log/slog": true, "encoding/json": true, "path": true, "aeshashbody": true, "indexbytebody": true, "memeqbody": true,
	"cmpbody": true, "countbody": true}

// profileBreakdown reads a CPU profile with go tool pprof and returns the CPU time per
// category.
func profileBreakdown(ctx context.Context, file string) (map[string]time.Duration, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w", file, err)
	}
	return parseTraces(bytes.NewReader(out))
}

// parseTraces sums the samples of pprof -traces output by category. A trace is a line of
// dashes, then "<value> <leaf frame>", then its callers, one frame a line.
func parseTraces(r io.Reader) (map[string]time.Duration, error) {
	sum := map[string]time.Duration{}
	var value time.Duration
	var stack []string
	flush := func() {
		if len(stack) > 0 {
			sum[classify(stack)] += value
		}
		stack = nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	started, first := false, false
	for sc.Scan() {
		line := sc.Text()
		switch fields := strings.Fields(line); {
		case strings.HasPrefix(line, "-----------+"):
			flush()
			started, first = true, true
		case !started || len(fields) == 0:
		case first:
			if len(fields) < 2 {
				return nil, fmt.Errorf("a trace starts with %q, want a value and a function", line)
			}
			d, err := time.ParseDuration(fields[0])
			if err != nil {
				return nil, fmt.Errorf("a trace's value %q: %w", fields[0], err)
			}
			value, stack, first = d, append(stack, fields[1]), false
		default:
			stack = append(stack, fields[0])
		}
	}
	flush()
	return sum, sc.Err()
}
