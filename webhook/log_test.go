package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/zapr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// lockedBuffer is a log sink that tests read after the handler wrote to it.
type lockedBuffer struct{ syncbuffer.Buffer }

func (l *lockedBuffer) Sync() error { return nil }

// lines returns the JSON lines written since the last call.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.Take()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// jsonLogger is a zap JSON logger at level, as the binary builds one, writing to w.
func jsonLogger(w zapcore.WriteSyncer, level zapcore.Level) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), w, level))
}

// withLog gives h a decision log writing JSON to w at level, through zapr as the binary does.
func withLog(h *Handler, w zapcore.WriteSyncer, level zapcore.Level) *Handler {
	h.log = newDecisionLog(zapr.NewLogger(jsonLogger(w, level)).WithName("admission"), h.log.mode)
	return h
}

// TestDecisionLog: every admission is logged once, at info, with the owner, namespace,
// mode, result and reason, and nothing of the pod's spec (where a token could be).
func TestDecisionLog(t *testing.T) {
	const token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.dG9rZW4" //nolint:gosec // a fake token: a value that must never be logged
	pod := func(meta string) []byte {
		return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":` + meta + `,"spec":{"containers":[{"name":"app","image":"a",` +
			`"env":[{"name":"TOKEN","value":"` + token + `"}]}]}}`)
	}
	tests := []struct {
		name string
		mode injector.NamespaceMode
		body []byte
		want map[string]any
	}{
		{"injected, owner from the controller reference", injector.ModeOptIn,
			reviewBody(t, pod(`{"generateName":"web-7d4b9-","annotations":{"apiaccess.io/inject":"true"},"ownerReferences":[`+
				`{"apiVersion":"v1","kind":"Other","name":"o","uid":"1"},`+
				`{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9","uid":"2","controller":true}]}`), nil),
			map[string]any{"owner": "ReplicaSet/web-7d4b9", "mode": "opt-in", "result": "injected", "reason": "opted-in",
				"message": `pod opted in with apiaccess.io/inject: "true"`, "warnings": 0.0}},
		{"overridden opt-out, owner from generateName", injector.ModeEnforced,
			reviewBody(t, pod(`{"generateName":"job-","annotations":{"apiaccess.io/inject":"false"}}`), nil),
			map[string]any{"owner": "Pod/job-", "mode": "enforced", "result": "injected", "reason": "enforced-override", "warnings": 1.0}},
		{"refused, owner from the name", injector.ModeEnabled,
			reviewBody(t, pod(`{"name":"p","annotations":{"apiaccess.io/read-only":"yes"}}`), nil),
			map[string]any{"owner": "Pod/p", "mode": "enabled", "result": "refused", "reason": "refused-annotation",
				"message": `api-access-injector: annotation apiaccess.io/read-only: invalid value "yes": must be "true" or "false"`}},
		{"skipped", injector.ModeEnabled, reviewBody(t, pod(`{"name":"p","annotations":{"apiaccess.io/inject":"false"}}`), nil),
			map[string]any{"owner": "Pod/p", "result": "skipped", "reason": "opted-out"}},
		{"bad request", injector.ModeOptIn, []byte(`{"kind":`),
			map[string]any{"owner": "", "namespace": "", "requestID": "", "result": "error", "reason": "bad-request"}},
	}
	var buf lockedBuffer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := withLog(newHandler(t, tt.mode), &buf, zapcore.InfoLevel)
			post(t, h, tt.body, "application/json")
			lines := buf.lines(t)
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1: %v", len(lines), lines)
			}
			line := lines[0]
			want := map[string]any{"level": "info", "logger": "admission", "msg": decisionMessage, "namespace": "team-a", "requestID": testUID}
			maps.Copy(want, tt.want)
			got := map[string]any{}
			for k := range want {
				got[k] = line[k]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("log line (-want +got):\n%s\nline: %v", diff, line)
			}
			raw, _ := json.Marshal(line)
			if bytes.Contains(raw, []byte(token)) {
				t.Errorf("the log line holds the token: %s", raw)
			}
		})
	}

	t.Run("nothing below info", func(t *testing.T) {
		h := withLog(newHandler(t, injector.ModeOptIn), &buf, zapcore.WarnLevel)
		post(t, h, reviewBody(t, realisticPod(t), nil), "application/json")
		if lines := buf.lines(t); len(lines) != 0 {
			t.Errorf("logged at warn level: %v", lines)
		}
	})
}

// TestMetricsAreBounded: whatever the webhook is sent, apiaccess_injections_total has only
// the series of the closed set of results, reasons and modes that the chart README documents,
// and no more than their product.
func TestMetricsAreBounded(t *testing.T) {
	documented := documentedReasons(t)
	var inCode []string
	for reason := range numReasons {
		for result := range numResults {
			if valid(result, reason) {
				inCode = append(inCode, reasonLabel(reason))
				break
			}
		}
	}
	slices.Sort(inCode)
	if diff := cmp.Diff(documented, inCode); diff != "" {
		t.Errorf("reasons documented in the chart README (-) and counted by the webhook (+):\n%s", diff)
	}

	// Everything the fuzz corpus and the response tests send, in every mode.
	var bodies [][]byte
	entries, err := os.ReadDir("testdata/fuzz/FuzzHandle")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile("testdata/fuzz/FuzzHandle/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, data)
	}
	bodies = append(bodies, reviewBody(t, realisticPod(t), nil), []byte(`{`), nil)
	for _, mode := range Paths {
		h := withLog(newHandler(t, mode), zapcore.AddSync(io.Discard), zapcore.InfoLevel)
		for _, b := range bodies {
			post(t, h, b, "application/json")
		}
	}

	ch := make(chan prometheus.Metric, 1024)
	go func() { injections.Collect(ch); close(ch) }()
	n := 0
	results, modes := resultLabels[:], []string{"opt-in", "enabled", "enforced"}
	for m := range ch {
		n++
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.GetLabel() {
			var allowed []string
			switch l.GetName() {
			case "result":
				allowed = results
			case "reason":
				allowed = documented
			case "mode":
				allowed = modes
			}
			if !slices.Contains(allowed, l.GetValue()) {
				t.Errorf("series with %s=%q, not one of %v", l.GetName(), l.GetValue(), allowed)
			}
		}
	}
	if bound := len(results) * len(documented) * len(modes); n == 0 || n > bound {
		t.Errorf("%d series of apiaccess_injections_total, want 1 to %d", n, bound)
	}
}

// documentedReasons reads the reason values from the chart README's table of them.
func documentedReasons(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../charts/api-access-injector/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "<!-- reasons -->")
	table, _, ok2 := strings.Cut(table, "<!-- /reasons -->")
	if !ok || !ok2 {
		t.Fatal("the chart README has no <!-- reasons --> table")
	}
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\|").FindAllStringSubmatch(table, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}
