package materialize

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/proxy"
	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// debianPython is Debian's interpreter, which imports the python3-kubernetes package.
const debianPython = "/usr/bin/python3"

// TestTransparentModeRealClients materialises a pod injected with transparent and read-only,
// runs its api-proxy sidecar from its spec, and then, with the app container's environment and
// its view of the file system (the service-account volume at
// /var/run/secrets/kubernetes.io/serviceaccount, /etc/hosts with the pod's hostAliases), four
// clients nobody here wrote, none told of the sidecar: a Go program using
// rest.InClusterConfig(), Debian's python3-kubernetes with config.load_incluster_config(), the
// docs' curl recipe, and kubectl with no kubeconfig. Each lists the pods through the sidecar
// (its metrics count the requests), and each one's write is refused by the proxy, although the
// pod's ServiceAccount may write: read-only cannot be bypassed.
func TestTransparentModeRealClients(t *testing.T) {
	ctx := t.Context()
	if out, err := exec.Command(debianPython, "-c", "import kubernetes").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import the kubernetes client (%v: %s): `make clients` (part of `make test`) installs Debian's python3-kubernetes", debianPython, err, out)
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("no curl: `make clients` (part of `make test`) installs it: %v", err)
	}
	healthPort, proxyPort := freePort(t), freePort(t)
	inj, err := injector.New(injector.Config{Version: "materialize",
		Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test", HealthPort: int32(healthPort)}})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, inj)
	// The ServiceAccount may write ConfigMaps: a refused write can only be the proxy's doing.
	if err := testenv.Grant(ctx, e.admin, e.ns, "default", "configmap-writer",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}}); err != nil {
		t.Fatal(err)
	}
	pod, err := e.admin.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "in-cluster", Annotations: map[string]string{
			injector.InjectAnnotation:      "true",
			injector.TransparentAnnotation: "true",
			injector.ReadOnlyAnnotation:    "true",
			injector.ProxyPortAnnotation:   strconv.Itoa(proxyPort),
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/app:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	k, err := New(e.cfg, pod, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.WriteVolumes(ctx, injector.SidecarName, "app"); err != nil {
		t.Fatal(err)
	}
	sp, err := k.Process(ctx, injector.SidecarName, SidecarOptions(e.proxy))
	if err != nil {
		t.Fatal(err)
	}
	sidecar, err := k.Start(sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sidecar.Stop(k.grace()); err != nil {
			t.Errorf("stopping the sidecar: %v\n%s", err, sidecar.Log())
		}
	})
	if err := k.WaitStarted(ctx, sidecar); err != nil {
		t.Fatal(err)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", healthPort)

	// Each client runs as the app container, in its view of the file system.
	run := func(t *testing.T, argv []string, dropEnv string, extraEnv ...string) string {
		t.Helper()
		p, err := k.Process(ctx, "app", ProcessOptions{Argv: argv, PodView: true})
		if err != nil {
			t.Fatal(err)
		}
		if dropEnv != "" {
			p.Env = slices.DeleteFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, dropEnv+"=") })
		}
		out, err := Execute(ctx, p, extraEnv...)
		if err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return string(out)
	}
	const refused = "--read-only lets only GET, HEAD and OPTIONS through, not POST"
	clients := []struct {
		name string
		run  func(t *testing.T) (pods []string, writeError string)
	}{
		{"go rest.InClusterConfig", func(t *testing.T) ([]string, string) {
			r := clientReport(t, run(t, []string{os.Args[0]}, "", AppEnvVar+"="+InClusterApp))
			return r.Pods, r.WriteError
		}},
		{"python3-kubernetes load_incluster_config", func(t *testing.T) ([]string, string) {
			r := clientReport(t, run(t, []string{debianPython, "-c", PythonInClusterClient}, ""))
			return r.Pods, r.WriteError
		}},
		{"the docs' curl recipe", func(t *testing.T) ([]string, string) {
			// Three JSON documents, as the API server's answers arrived through the proxy.
			dec := json.NewDecoder(strings.NewReader(run(t, []string{"/bin/sh", "-c", strings.ReplaceAll(CurlRecipe, "curl ", curl+" ")}, "")))
			var versions metav1.APIVersions
			var list metav1.PartialObjectMetadataList
			var write metav1.Status
			if err := errors.Join(dec.Decode(&versions), dec.Decode(&list), dec.Decode(&write)); err != nil || versions.Kind != "APIVersions" {
				t.Fatalf("the recipe printed APIVersions %+v, a list and a Status: %v", versions, err)
			}
			var names []string
			for _, p := range list.Items {
				names = append(names, p.Name)
			}
			return names, write.Message
		}},
		{"kubectl with no kubeconfig", func(t *testing.T) ([]string, string) {
			var names []string
			for l := range strings.FieldsSeq(run(t, []string{e.kubectl, "get", "pods", "-o", "name"}, injector.KubeconfigEnvVar)) {
				names = append(names, strings.TrimPrefix(l, "pod/"))
			}
			p, err := k.Process(ctx, "app", ProcessOptions{Argv: []string{e.kubectl, "create", "configmap", "written-by-kubectl"}, PodView: true})
			if err != nil {
				t.Fatal(err)
			}
			p.Env = slices.DeleteFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, injector.KubeconfigEnvVar+"=") })
			out, err := Execute(ctx, p)
			if err == nil {
				t.Errorf("kubectl create succeeded:\n%s", out)
			}
			return names, string(out)
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			before := requestCounts(t, metricsURL)
			pods, writeErr := c.run(t)
			after := requestCounts(t, metricsURL)
			if !slices.Contains(pods, pod.Name) {
				t.Errorf("listed %q, want the pod %q among them", pods, pod.Name)
			}
			if !strings.Contains(writeErr, refused) {
				t.Errorf("the write was not refused by the proxy's read-only filter: %q", writeErr)
			}
			if after["GET 200"] <= before["GET 200"] || after["POST 403"] != before["POST 403"]+1 {
				t.Errorf("the sidecar's metrics did not count the client's requests: before %v, after %v", before, after)
			}
		})
	}
	cms, err := e.admin.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if strings.HasPrefix(cm.Name, "written-by-") {
			t.Errorf("ConfigMap %s was written past the proxy", cm.Name)
		}
	}

	// An app that keeps one client, loaded by rest.InClusterConfig() before the sidecar is
	// killed (as the OOM killer does) and restarted by the kubelet, still lists pods after it:
	// the restarted sidecar serves under the CA kept in apiaccess-ca. Then, as a control, the
	// same with that volume emptied, which is what every restart did before it existed: the
	// client fails verification.
	t.Run("a sidecar restart keeps the CA an in-cluster client loaded", func(t *testing.T) {
		p, err := k.Process(ctx, "app", ProcessOptions{Argv: []string{os.Args[0]}, PodView: true})
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd, err := p.command(actx)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, AppEnvVar+"="+InClusterLoopApp)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := &syncbuffer.Buffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Errorf("the app: %v\n%s", err, stderr)
			}
		}()
		lines := bufio.NewScanner(stdout)
		list := func(t *testing.T) ClientReport {
			t.Helper()
			if _, err := io.WriteString(stdin, "list\n"); err != nil {
				t.Fatalf("the app: %v\n%s", err, stderr)
			}
			if !lines.Scan() {
				t.Fatalf("the app wrote no report: %v\n%s", lines.Err(), stderr)
			}
			var r ClientReport
			if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
				t.Fatalf("the app's report %q: %v", lines.Bytes(), err)
			}
			return r
		}
		restart := func(t *testing.T) {
			t.Helper()
			_ = sidecar.cmd.Process.Kill()
			<-sidecar.done
			if sidecar, err = k.Start(sp, nil); err != nil {
				t.Fatal(err)
			}
			if err := k.WaitStarted(ctx, sidecar); err != nil {
				t.Fatalf("%v\n%s", err, sidecar.Log())
			}
		}
		caCrt := filepath.Join(k.VolumeDir(injector.ServiceAccountVolumeName), proxy.CAFile)
		loaded, err := os.ReadFile(caCrt)
		if err != nil {
			t.Fatal(err)
		}
		if r := list(t); r.ListError != "" || !slices.Contains(r.Pods, pod.Name) {
			t.Fatalf("before the restart: listed %q, error %q", r.Pods, r.ListError)
		}

		restart(t)
		if !strings.Contains(sidecar.Log(), "reusing the transparent-mode CA of an earlier start") {
			t.Errorf("the restarted sidecar's log does not say it reused the CA:\n%s", sidecar.Log())
		}
		if now, _ := os.ReadFile(caCrt); !bytes.Equal(now, loaded) {
			t.Errorf("the restart changed ca.crt:\n%s\nwas:\n%s", now, loaded)
		}
		if r := list(t); r.ListError != "" || !slices.Contains(r.Pods, pod.Name) {
			t.Errorf("after the restart, the client created before it listed %q, error %q", r.Pods, r.ListError)
		}

		if err := os.Remove(filepath.Join(k.VolumeDir(injector.CAVolumeName), proxy.CAStateFile)); err != nil {
			t.Fatal(err)
		}
		restart(t)
		if r := list(t); !strings.Contains(r.ListError, "certificate signed by unknown authority") {
			t.Errorf("control: with the CA volume emptied, the restarted sidecar's new CA did not fail the old client's verification: listed %q, error %q",
				r.Pods, r.ListError)
		}
	})
}

func clientReport(t *testing.T, out string) ClientReport {
	t.Helper()
	var r ClientReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("the client's report %q: %v", out, err)
	}
	if r.ListError != "" {
		t.Errorf("listing pods: %s", r.ListError)
	}
	return r
}

// requestCounts reads api_proxy_requests_total from the sidecar's metrics, keyed "METHOD code".
func requestCounts(t *testing.T, url string) map[string]int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `api_proxy_requests_total{code="`)
		if !ok {
			continue
		}
		code, rest, _ := strings.Cut(rest, `",method="`)
		method, value, _ := strings.Cut(rest, `"} `)
		n, _ := strconv.Atoi(value)
		counts[method+" "+code] = n
	}
	return counts
}
