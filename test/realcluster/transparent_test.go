//go:build realcluster

package realcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/materialize"
)

// hostUsrImage is hack/imgbuild's HostUsrRef: a merged-/usr root for a pod that mounts the
// node's /usr there.
const hostUsrImage = imageRepo + "hostusr:" + imageTag

// readOnlyRefusal is what the proxy answers a write in a read-only pod.
const readOnlyRefusal = "--read-only lets only GET, HEAD and OPTIONS through, not POST"

// inClusterClient is one container of a transparent-mode pod running a client nobody here
// wrote, none told of the sidecar, and how to read what it saw from its log.
type inClusterClient struct {
	container corev1.Container
	// read returns the pods listed and the answer to the write, from the container's log.
	read func(t *testing.T, log string) (pods []string, writeError string)
	// lists and writes say what the client does: list the pods, try to create a ConfigMap.
	lists, writes bool
}

// TestTransparentMode proves issue 13 on a real node: in pods with apiaccess.io/transparent and
// read-only, the in-cluster clients of the Kubernetes docs' "Accessing the Kubernetes API from a
// Pod", unmodified (client-go's rest.InClusterConfig(), Debian's python3-kubernetes with
// config.load_incluster_config(), the page's curl recipe verbatim, and kubectl with no
// kubeconfig), each list the pods through the sidecar, and each one's write is refused by the
// sidecar although the pod's ServiceAccount may create ConfigMaps; the sidecar's metrics count
// the requests. The containers hold only the sidecar's CA and a placeholder token, so a list
// that succeeds cannot have gone anywhere else.
func TestTransparentMode(t *testing.T) {
	annotations := optIn(injector.TransparentAnnotation, "true", injector.ReadOnlyAnnotation, "true")

	t.Run("restricted namespace: client-go rest.InClusterConfig() and kubectl with no kubeconfig", func(t *testing.T) {
		t.Parallel()
		// Restricted: the sidecar, its sysctl net.ipv4.ip_unprivileged_port_start=0 (to bind
		// 443 as non-root) and the hostAliases all pass Pod Security restricted.
		ns := newNamespace(t, "e2e-transparent", map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
		})
		kubectl := func(name string, args ...string) corev1.Container {
			c := appContainer(name, kubectlImg, args...)
			// No kubeconfig: the injector keeps a KUBECONFIG the container sets, empty here,
			// so kubectl falls back to its in-cluster configuration, as in a pod without the
			// sidecar. kubectl keeps a discovery cache under $HOME.
			c.Env = append(c.Env, corev1.EnvVar{Name: injector.KubeconfigEnvVar, Value: ""}, corev1.EnvVar{Name: "HOME", Value: "/tmp"})
			c.SecurityContext.ReadOnlyRootFilesystem = nil
			return c
		}
		runInClusterClients(t, ns, annotations, nil, []inClusterClient{
			{container: appContainer("go", appImage, "incluster"), lists: true, writes: true, read: func(t *testing.T, log string) ([]string, string) {
				line, _ := strings.CutPrefix(lastLine(log), "RESULT ")
				return clientReport(t, line)
			}},
			{container: kubectl("kubectl-get", "get", "pods", "-o", "name"), lists: true, read: func(t *testing.T, log string) ([]string, string) {
				var pods []string
				for l := range strings.FieldsSeq(log) {
					if name, ok := strings.CutPrefix(l, "pod/"); ok {
						pods = append(pods, name)
					}
				}
				return pods, ""
			}},
			{container: kubectl("kubectl-create", "create", "configmap", "written-by-kubectl"), writes: true,
				read: func(t *testing.T, log string) ([]string, string) { return nil, log }},
		})
	})

	t.Run("python3-kubernetes and the docs' curl recipe, from the node's /usr", func(t *testing.T) {
		t.Parallel()
		if out, err := exec.Command("/usr/bin/python3", "-c", "import kubernetes").CombinedOutput(); err != nil {
			t.Fatalf("the node's /usr/bin/python3 cannot import the kubernetes client (%v: %s): `make clients` installs Debian's python3-kubernetes", err, out)
		}
		if _, err := exec.LookPath("/usr/bin/curl"); err != nil {
			t.Fatalf("the node has no /usr/bin/curl: `make clients` installs it: %v", err)
		}
		// No registry and no image engine here: the clients are the node's own Debian
		// programs, run from its /usr, mounted read-only by hostPath into an image that is
		// nothing but the merged-/usr links. hostPath needs a namespace whose Pod Security
		// level is privileged; the sidecar itself is restricted-clean (the other subtest runs
		// it in a restricted namespace).
		ns := newNamespace(t, "e2e-transparent-debian", map[string]string{"pod-security.kubernetes.io/enforce": "privileged"})
		hostUsr := func(name string, command ...string) corev1.Container {
			c := appContainer(name, hostUsrImage)
			c.Command = command
			c.VolumeMounts = []corev1.VolumeMount{{Name: "host-usr", MountPath: "/usr", ReadOnly: true}}
			c.Env = append(c.Env, corev1.EnvVar{Name: "HOME", Value: "/tmp"})
			return c
		}
		volumes := []corev1.Volume{{Name: "host-usr", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: "/usr", Type: ptr.To(corev1.HostPathDirectory),
		}}}}
		runInClusterClients(t, ns, annotations, volumes, []inClusterClient{
			{container: hostUsr("python", "python3", "-c", materialize.PythonInClusterClient), lists: true, writes: true,
				read: func(t *testing.T, log string) ([]string, string) { return clientReport(t, lastLine(log)) }},
			// The recipe verbatim, in a shell of its own whose stderr, where curl writes its
			// progress meter, is left out of the log: the kubelet interleaves it with the
			// answers on stdout.
			{container: hostUsr("curl", "sh", "-c", `sh -c "$1" recipe 2>/dev/null`, "sh", materialize.CurlRecipe), lists: true, writes: true,
				read: func(t *testing.T, log string) ([]string, string) {
					// Three JSON documents, as the answers arrived through the proxy.
					dec := json.NewDecoder(strings.NewReader(log))
					var versions metav1.APIVersions
					var list metav1.PartialObjectMetadataList
					var write metav1.Status
					if err := errors.Join(dec.Decode(&versions), dec.Decode(&list), dec.Decode(&write)); err != nil || versions.Kind != "APIVersions" {
						t.Fatalf("the recipe printed %q, not APIVersions, a list and a Status: %v", log, err)
					}
					var pods []string
					for _, p := range list.Items {
						pods = append(pods, p.Name)
					}
					return pods, write.Message
				}},
		})
	})
}

// runInClusterClients creates the pod "in-cluster" in ns with the clients, each run once, and
// an app container that keeps the pod running after they are done, so that the sidecar's
// metrics can be read. It checks that every client listed the pod and that every write was
// refused by the proxy, that the sidecar counted those requests, and that no ConfigMap was
// written.
func runInClusterClients(t *testing.T, ns string, annotations map[string]string, volumes []corev1.Volume, clients []inClusterClient) {
	t.Helper()
	ctx := t.Context()
	var containers []corev1.Container
	lists, writes := 0, 0
	for _, c := range clients {
		containers = append(containers, c.container)
		if c.lists {
			lists++
		}
		if c.writes {
			writes++
		}
	}
	spec := podSpec(corev1.RestartPolicyNever, append(containers, appContainer("app", appImage, "serve"))...)
	spec.Volumes = volumes
	p := createPod(t, ns, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "in-cluster", Annotations: annotations}, Spec: spec})
	checkInjected(t, p)
	if slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") }) {
		t.Errorf("the pod keeps its own service-account token volume: %v", p.Spec.Volumes)
	}

	poll(t, 3*time.Minute, "every client container of "+ns+"/in-cluster to finish", func(ctx context.Context) (bool, error) {
		got, err := clientset.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got.Status.Phase != corev1.PodPending && got.Status.Phase != corev1.PodRunning {
			return false, errors.New("the pod ended " + string(got.Status.Phase))
		}
		done := 0
		for _, s := range got.Status.ContainerStatuses {
			if s.Name != "app" && s.State.Terminated != nil {
				done++
			}
		}
		p = got
		return done == len(clients), nil
	})

	for _, c := range clients {
		t.Run(c.container.Name, func(t *testing.T) {
			log := logs(t, ns, p.Name, c.container.Name)
			pods, writeErr := c.read(t, log)
			if c.lists && !slices.Contains(pods, p.Name) {
				t.Errorf("listed %q, want the pod %q among them; log:\n%s", pods, p.Name, log)
			}
			if c.writes && !strings.Contains(writeErr, readOnlyRefusal) {
				t.Errorf("the write was not refused by the proxy's read-only filter: %q; log:\n%s", writeErr, log)
			}
		})
	}

	// The sidecar's metrics, through the API server's pod proxy to its health port.
	raw, err := clientset.CoreV1().Pods(ns).ProxyGet("http", p.Name, strconv.Itoa(injector.DefaultHealthPort), "/metrics", nil).DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading the sidecar's metrics: %v", err)
	}
	counts := requestCounts(string(raw))
	if counts["POST 403"] != writes {
		t.Errorf("the sidecar counted %d refused POSTs, want %d (one per client's write); counts %v", counts["POST 403"], writes, counts)
	}
	if counts["GET 200"] < lists {
		t.Errorf("the sidecar counted %d successful GETs, want at least %d (a list per client that lists); counts %v", counts["GET 200"], lists, counts)
	}
	t.Logf("the sidecar's request counts: %v", counts)

	cms, err := clientset.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if strings.HasPrefix(cm.Name, "written-by-") {
			t.Errorf("ConfigMap %s was written past the proxy", cm.Name)
		}
	}
}

// requestCounts sums api_proxy_requests_total by "METHOD code", whatever other labels its
// series carry.
func requestCounts(metrics string) map[string]int {
	counts := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "api_proxy_requests_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		var code, method string
		for l := range strings.SplitSeq(labels, ",") {
			k, v, _ := strings.Cut(l, "=")
			switch v = strings.Trim(v, `"`); k {
			case "code":
				code = v
			case "method":
				method = v
			}
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err == nil {
			counts[method+" "+code] += int(n)
		}
	}
	return counts
}

// lastLine is the last non-empty line of a log.
func lastLine(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	return lines[len(lines)-1]
}

// clientReport decodes a materialize.ClientReport line, in which a list must not have failed.
func clientReport(t *testing.T, line string) ([]string, string) {
	t.Helper()
	var r materialize.ClientReport
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("the client's report %q: %v", line, err)
	}
	if r.ListError != "" {
		t.Errorf("listing pods: %s", r.ListError)
	}
	return r.Pods, r.WriteError
}
