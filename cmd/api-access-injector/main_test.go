package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test binary acts as api-access-injector when this variable is set, so that the tests
// run the real command line: exit code, stdout and stderr.
const beMain = "API_ACCESS_INJECTOR_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func command(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), beMain+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestInjectCommand(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {apiaccess.io/inject: \"true\"}\nspec:\n  containers: [{name: a, image: a}]\n"
	out, errOut, code := command(t, pod, "inject", "-f", "-", "--sidecar-image", "registry.example.com/api-proxy:1")
	if code != 0 || !strings.Contains(out, "image: registry.example.com/api-proxy:1") || errOut != "" {
		t.Errorf("inject: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}

	bad := strings.Replace(pod, `{apiaccess.io/inject: "true"}`, `{apiaccess.io/inject: "true", apiaccess.io/read-only: "yes"}`, 1)
	out, errOut, code = command(t, bad, "inject", "-f", "-")
	if code != 1 || out != "" || !strings.Contains(errOut, `Pod p: api-access-injector: annotation apiaccess.io/read-only: invalid value "yes"`) {
		t.Errorf("refusal: exit %d, stdout %q, stderr %q; want exit 1, no output, the admission message", code, out, errOut)
	}

	_, errOut, code = command(t, "", "inject", "--namespace-injection", "sometimes")
	for _, want := range []string{`-f: required`, `--namespace-injection: "sometimes" is not enabled or enforced`} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("bad flags: exit %d, stderr %q; want exit 1 and %q", code, errOut, want)
		}
	}
}

// TestInjectAllOrNothing: a refusal anywhere in the input leaves stdout empty, so that
// `inject -f - | kubectl apply -f -` without pipefail applies nothing rather than a partial set.
func TestInjectAllOrNothing(t *testing.T) {
	pod := func(name, readOnly string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n  annotations: {apiaccess.io/inject: \"true\", apiaccess.io/read-only: \"" +
			readOnly + "\"}\nspec:\n  containers: [{name: a, image: a}]\n"
	}
	var docs []string
	for i := range 7 {
		docs = append(docs, pod(fmt.Sprintf("p%d", i), "true"))
	}
	in := strings.Join(append(docs, pod("refused", "yes")), "---\n")
	out, errOut, code := command(t, in, "inject", "-f", "-")
	if code != 1 || out != "" || !strings.Contains(errOut, `Pod refused: api-access-injector: annotation apiaccess.io/read-only: invalid value "yes"`) {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant exit 1, the refusal, and no output", code, errOut, out)
	}

	list := "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSuffix(pod("listed", "true"), "\n"), "\n", "\n  ") + "\n"
	out, errOut, code = command(t, list, "inject", "-f", "-")
	if code != 0 || errOut != "" || !strings.Contains(out, "kind: List") || !strings.Contains(out, "apiaccess.io/status:") {
		t.Errorf("List: exit %d, stderr %q, stdout:\n%s\nwant the List with its Pod injected", code, errOut, out)
	}
}

// TestWebhookReportsEveryConfigurationError: the webhook refuses to start on a bad
// configuration and names every problem at once.
func TestWebhookReportsEveryConfigurationError(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte("proxyPort: 80\ntokenExpirationSeconds: 5\nsidecar:\n  image: x\n  healthPort: 80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := command(t, "", "webhook", "--config", config, "--cert-dir", dir, "--webhook-port", "70000", "--log-level", "loud")
	for _, want := range []string{
		config + ": proxyPort: 80 is out of range 1024-65535",
		config + ": tokenExpirationSeconds: 5 is out of range 600-86400",
		config + ": sidecar.healthPort: 80 is also the proxyPort",
		`--log-level: "loud" is not one of debug, info, warn, error`,
		"--webhook-port: 70000 is out of range 1-65535",
		"--cert-dir: tls.crt is missing",
		"--cert-dir: tls.key is missing",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}

	if err := os.WriteFile(config, []byte("sidecar:\n  imagee: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, _ := command(t, "", "webhook", "--config", config); !strings.Contains(errOut, `unknown field "imagee"`) {
		t.Errorf("a misspelt key was not refused:\n%s", errOut)
	}
}

// TestRBACCommand runs `rbac -f -` on a record as `api-proxy access -o json` prints it: YAML
// that names the Role for the pod's ServiceAccount, and clear errors for bad input and flags.
func TestRBACCommand(t *testing.T) {
	record := `{"apiVersion":"apiaccess.io/v1alpha1","kind":"AccessRecord","namespace":"shop","serviceAccount":"app","pod":"web-1",
"since":"2026-11-30T17:00:00Z","requests":[{"verb":"list","apiGroup":"","resource":"pods","subresource":"","namespace":"shop",
"nonResourceURL":"","outcome":"allowed","count":3,"lastSeen":"2026-11-30T18:00:00Z"}],"otherCount":0,"truncated":false}`
	out, errOut, code := command(t, record, "rbac", "-f", "-")
	for _, want := range []string{"kind: Role\n", "kind: RoleBinding\n", "  name: app-apiaccess\n  namespace: shop\n", "- list\n"} {
		if code != 0 || errOut != "" || !strings.Contains(out, want) {
			t.Errorf("rbac -f -: exit %d, stderr %q, stdout lacks %q:\n%s", code, errOut, want, out)
		}
	}
	out, errOut, code = command(t, record, "rbac", "-f", "-", "-o", "json")
	if code != 0 || !strings.Contains(out, `"kind": "List"`) {
		t.Errorf("rbac -o json: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{strings.Replace(record, `"allowed"`, `"ok"`, 1), []string{"rbac", "-f", "-"},
			`standard input: record 1 (pod "web-1"): requests[0].outcome: "ok": must be one of allowed, forbidden, unauthorized, refused, failed`},
		{record, []string{"rbac", "-f", "-", "-o", "table"}, `--output: "table" is not one of yaml, json`},
		{record, []string{"rbac"}, `give exactly one of NAME, TYPE/NAME or -f FILE`},
		{record, []string{"rbac", "-f", "-", "pod/x"}, `give exactly one of NAME, TYPE/NAME or -f FILE`},
	} {
		out, errOut, code := command(t, tc.stdin, tc.args...)
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
}
