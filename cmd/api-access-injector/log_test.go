package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// TestLogConfig: the webhook's logger, built as runWebhook builds it, writes JSON lines with
// an RFC 3339 timestamp, writes every repeated line (no sampling: each admission decision
// is one line), and nothing below its level.
func TestLogConfig(t *testing.T) {
	out := filepath.Join(t.TempDir(), "log")
	zc := logConfig(zapcore.InfoLevel, false)
	zc.OutputPaths = []string{out}
	l, err := zc.Build()
	if err != nil {
		t.Fatal(err)
	}
	const n = 500 // more than zap's production sampling keeps of one message in a second (100)
	for range n {
		l.Info("admission decision")
	}
	l.Debug("not written")
	_ = l.Sync()
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) != n {
		t.Fatalf("%d lines written of %d", len(lines), n)
	}
	for _, line := range [][]byte{lines[0], lines[n-1]} {
		var entry struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(line, &entry); err != nil || entry.Msg != "admission decision" {
			t.Fatalf("line %s: not the JSON entry written (%v)", line, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, entry.TS); err != nil {
			t.Errorf("ts %q is not RFC 3339: %v", entry.TS, err)
		}
	}
}
