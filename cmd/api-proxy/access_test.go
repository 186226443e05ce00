package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/api-access-injector/api-access-injector/proxy"
)

// TestAccessCommand runs the api-proxy binary as the sidecar runs it, sends a request
// through it, and runs `api-proxy access` with no flag, as `kubectl exec` does in the
// sidecar: it must find the server by itself and print the record.
func TestAccessCommand(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "api-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
	}))
	t.Cleanup(up.Close)
	sa := filepath.Join(dir, "sa")
	claims := `{"sub":"system:serviceaccount:team-a:app","kubernetes.io":{"namespace":"team-a",` +
		`"serviceaccount":{"name":"app"},"pod":{"name":"app-7d9f"}}}`
	jwt := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln"
	for name, data := range map[string][]byte{
		proxy.TokenFile:     []byte(jwt),
		proxy.CAFile:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}),
		proxy.NamespaceFile: []byte("team-a"),
	} {
		if err := os.MkdirAll(sa, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	server := exec.Command(bin, "--port="+port, "--health-port=0", "--server="+up.URL, "--serviceaccount-dir="+sa)
	var serverLog bytes.Buffer
	server.Stderr = &serverLog
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// How the server ends is not this test's subject: only what it logged.
		_ = server.Process.Signal(os.Interrupt)
		_ = server.Wait()
		if strings.Contains(serverLog.String(), jwt) {
			t.Errorf("the server's log holds the token:\n%s", serverLog.String())
		}
	})
	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/api/v1/namespaces/team-a/pods")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server does not answer within 30s: %v\n%s", err, serverLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, args := range [][]string{{"access", "-o", "json"}, {"access", "-o", "json", "--port=" + port}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("api-proxy %q: %v %s", args, err, stderrOf(err))
		}
		var rec accessrecord.Record
		if err := json.Unmarshal(out, &rec); err != nil {
			t.Fatalf("api-proxy %q printed no record (%v):\n%s", args, err, out)
		}
		want := accessrecord.Record{APIVersion: accessrecord.APIVersion, Kind: accessrecord.Kind,
			Namespace: "team-a", ServiceAccount: "app", Pod: "app-7d9f",
			Requests: []accessrecord.Request{{Verb: "list", Resource: "pods", Namespace: "team-a", Outcome: accessrecord.Allowed, Count: 1}}}
		if diff := cmp.Diff(want, rec, cmpopts.IgnoreFields(accessrecord.Record{}, "Since"),
			cmpopts.IgnoreFields(accessrecord.Request{}, "LastSeen")); diff != "" {
			t.Errorf("api-proxy %q (-want +got):\n%s", args, diff)
		}
	}
	out, err := exec.Command(bin, "access").Output()
	if err != nil {
		t.Fatalf("api-proxy access: %v %s", err, stderrOf(err))
	}
	for _, want := range []string{"# pod team-a/app-7d9f  serviceAccount app", "OUTCOME  VERB  APIGROUP  RESOURCE  NAMESPACE  COUNT",
		"allowed  list  core      pods      team-a     1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("api-proxy access printed no %q:\n%s", want, out)
		}
	}
}

func stderrOf(err error) string {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(ee.Stderr)
	}
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

func TestAccessCommandErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"access", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"access", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"access", "--port=" + freePort(t)}, "reading the access record"},
	} {
		if err := run(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestLogTime checks that the sidecar's log lines carry their time in RFC 3339, in UTC.
func TestLogTime(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf).Info("hello")
	var line struct{ Time string }
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339, line.Time)
	if err != nil || !strings.HasSuffix(line.Time, "Z") || time.Since(ts) > time.Minute {
		t.Errorf("time %q (%v), want RFC 3339 in UTC, now", line.Time, err)
	}
}
