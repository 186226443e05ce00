package proxy

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestReadCgroupLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, content string
		limit         int64
		ok            bool
	}{
		{name: "v2 limit", content: "67108864\n", limit: 64 << 20, ok: true},
		{name: "v2 no limit", content: "max\n"},
		{name: "v1 no limit", content: "9223372036854771712\n"},
		{name: "garbage", content: "64Mi\n"},
		{name: "zero", content: "0\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(dir, tt.name)
			if err := os.WriteFile(f, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if limit, ok := readCgroupLimit(f); limit != tt.limit || ok != tt.ok {
				t.Errorf("readCgroupLimit(%q) = %d, %v; want %d, %v", tt.content, limit, ok, tt.limit, tt.ok)
			}
		})
	}
	if _, ok := readCgroupLimit(filepath.Join(dir, "missing")); ok {
		t.Error("a missing file sets a limit")
	}
}

func TestSetSoftMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	dir := t.TempDir()
	none, limited := filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.limit_in_bytes")
	for file, content := range map[string]string{none: "max\n", limited: "67108864\n"} {
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	if got := setSoftMemoryLimit(log, []string{none, limited}); got != 48<<20 {
		t.Errorf("soft limit %d, want 48 MiB (3/4 of 64 MiB)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 48<<20 {
		t.Errorf("runtime memory limit %d, want 48 MiB", got)
	}
	debug.SetMemoryLimit(prev)
	t.Setenv("GOMEMLIMIT", "100MiB")
	if got := setSoftMemoryLimit(log, []string{limited}); got != 0 {
		t.Errorf("with GOMEMLIMIT set, soft limit %d, want it left alone", got)
	}
}
