package materialize

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// TestMain lets Run re-execute this test binary as the app (see AppMain), and as the
// process that sets up a pod view (see MounterMain).
func TestMain(m *testing.M) {
	if IsMounter() {
		os.Exit(MounterMain())
	}
	if IsApp() {
		os.Exit(AppMain())
	}
	os.Exit(m.Run())
}

// envFor starts envtest's API server with the webhook serving inj, and a namespace whose
// default ServiceAccount may list pods. It builds api-proxy meanwhile.
type envFor struct {
	cfg     *rest.Config
	admin   *kubernetes.Clientset
	ns      string
	proxy   string // the api-proxy binary
	kubectl string
}

func startEnv(t *testing.T, inj *injector.Injector) *envFor {
	t.Helper()
	ctx := t.Context()
	ctrl.SetLogger(logr.Discard())

	// Building the proxy overlaps with starting the control plane.
	binDir := t.TempDir()
	built := make(chan error, 1)
	go func() { built <- buildProxy(binDir) }()

	env, err := testenv.New()
	if err != nil {
		t.Fatal(err) // names the command that provisions the binaries
	}
	hooks, err := testenv.LoadWebhooks("../../../config/webhook/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{MutatingWebhooks: hooks}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	stop, err := testenv.StartWebhook(env, cfg, inj, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := podReaderNamespace(t, admin)
	if err := EnsureRootCA(ctx, admin, ns, cfg.CAData); err != nil {
		t.Fatal(err)
	}
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	return &envFor{cfg: cfg, admin: admin, ns: ns, proxy: filepath.Join(binDir, "api-proxy"), kubectl: filepath.Join(assets, "kubectl")}
}

// patchAsAttacker rewrites the pod's annotations and labels as someone allowed only to patch
// the pod would: an apiaccess.io/kubeconfig with another server and an exec plugin (what an
// earlier version's downward-API kubeconfig file would then have shown the app), and the
// status annotation. It returns the pod as stored afterwards.
func patchAsAttacker(t *testing.T, e *envFor, name, marker string) *corev1.Pod {
	t.Helper()
	evil := "apiVersion: v1\nkind: Config\nclusters:\n- name: evil\n  cluster: {server: 'https://attacker.example.com'}\n" +
		"users:\n- name: evil\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ['-c', 'touch " + marker + "']}\n" +
		"contexts:\n- name: evil\n  context: {cluster: evil, user: evil, namespace: kube-system}\ncurrent-context: evil\n"
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{injector.KubeconfigAnnotation: evil, "team.example.com/note": "patched"},
		"labels":      map[string]string{"patched": "true"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := e.admin.CoreV1().Pods(e.ns).Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patching the pod's annotations: %v", err)
	}
	if pod.Annotations[injector.KubeconfigAnnotation] != evil {
		t.Fatalf("the API server did not store the patched %s annotation", injector.KubeconfigAnnotation)
	}
	return pod
}

// checkKubeconfigFile loads the kubeconfig the app loaded, as client-go does, and checks that
// it is the sidecar's: the local proxy, the pod's namespace, no credential, no exec plugin.
func checkKubeconfigFile(t *testing.T, path, wantServer, wantNS string) {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("loading the app's kubeconfig: %v", err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.Clusters[ctx.Cluster] == nil || kc.AuthInfos[ctx.AuthInfo] == nil {
		t.Fatalf("the app's kubeconfig has no complete current context: %+v", kc)
	}
	got := []string{kc.Clusters[ctx.Cluster].Server, ctx.Namespace}
	if diff := cmp.Diff([]string{wantServer, wantNS}, got); diff != "" {
		t.Errorf("the app's kubeconfig: server, namespace (-want +got):\n%s", diff)
	}
	for name, u := range kc.AuthInfos {
		if u.Exec != nil || u.AuthProvider != nil || u.Token != "" || u.TokenFile != "" {
			t.Errorf("the app's kubeconfig user %q carries credentials or a plugin: %+v", name, u)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("kubeconfig file mode %v, %v; want 0644, readable by app containers of any user", fi.Mode().Perm(), err)
	}
}

// TestInjectedPodListsPods creates an opted-in pod through the webhook, patches its
// annotations as someone with patch rights on the pod would, materialises what the API
// server stored, runs the api-proxy sidecar from its spec and an app with the app container's
// environment, and checks that the app lists pods through the sidecar three ways while
// holding no credential itself, and that the patch reached nothing the app loads.
func TestInjectedPodListsPods(t *testing.T) {
	ctx := t.Context()
	healthPort, proxyPort := freePort(t), freePort(t)
	inj, err := injector.New(injector.Config{Version: "materialize",
		Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test", HealthPort: int32(healthPort)}})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, inj)
	cfg, ns := e.cfg, e.ns
	created, err := e.admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
			injector.InjectAnnotation:       "true",
			injector.ProxyPortAnnotation:    strconv.Itoa(proxyPort),
			injector.IsolateTokenAnnotation: "true",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.com/app:1",
			Command: []string{"/app", "--kubeconfig=$(KUBECONFIG)", "--pod=$(POD_NAME)"},
			Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Spec.InitContainers) == 0 || created.Spec.InitContainers[0].Name != injector.SidecarName {
		t.Fatalf("the stored pod has no %s sidecar: the webhook did not inject it", injector.SidecarName)
	}
	if v, ok := created.Annotations[injector.KubeconfigAnnotation]; ok {
		t.Errorf("the injector wrote the %s annotation: %q", injector.KubeconfigAnnotation, v)
	}
	root := t.TempDir()
	marker := filepath.Join(root, "exec-plugin-ran")
	pod := patchAsAttacker(t, e, created.Name, marker)

	res, err := Run(ctx, Options{
		Config: cfg, Pod: pod, Root: root,
		ProxyBinary: e.proxy,
		App:         []string{os.Args[0]},
		Kubectl:     e.kubectl,
	})
	if err != nil {
		t.Fatalf("materialising the pod: %v", err)
	}

	t.Run("the patch reaches nothing the app loads", func(t *testing.T) {
		kubeconfig, _ := res.App.Getenv(injector.KubeconfigEnvVar)
		checkKubeconfigFile(t, kubeconfig, "http://127.0.0.1:"+strconv.Itoa(proxyPort), ns)
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Errorf("the exec plugin of the patched annotation ran in the app: %v", err)
		}
		if !strings.Contains(res.SidecarLog, "wrote the app containers' kubeconfig") {
			t.Errorf("the sidecar did not log writing the kubeconfig:\n%s", res.SidecarLog)
		}
	})

	t.Run("lists pods through the sidecar", func(t *testing.T) {
		if res.Report.Namespace != ns {
			t.Errorf("the kubeconfig's namespace is %q, want the pod's %q", res.Report.Namespace, ns)
		}
		for way, names := range map[string][]string{
			"client-go through KUBECONFIG": res.Report.ClientGo,
			"HTTP through KUBE_API_URL":    res.Report.HTTP,
			"kubectl get pods":             res.Kubectl,
		} {
			if !slices.Contains(names, pod.Name) {
				t.Errorf("%s listed %q, want the pod %q among them", way, names, pod.Name)
			}
		}
	})

	tokenDir := filepath.Join(root, "volumes", injector.TokenVolumeName)
	token, err := os.ReadFile(filepath.Join(tokenDir, "token"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the app holds no credential", func(t *testing.T) {
		for _, e := range res.App.Env {
			name, value, _ := strings.Cut(e, "=")
			if strings.Contains(value, string(token)) || strings.Contains(strings.ToUpper(name), "TOKEN") {
				t.Errorf("the app's environment has a credential: %s", name)
			}
			if strings.HasPrefix(value, tokenDir) {
				t.Errorf("the app's environment points into the token volume: %s", e)
			}
		}
		app := pod.Spec.Containers[0]
		for _, m := range app.VolumeMounts {
			for _, v := range pod.Spec.Volumes {
				if v.Name == m.Name && v.Projected != nil &&
					slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil }) {
					t.Errorf("the app container mounts the token volume %q", v.Name)
				}
			}
		}
		if strings.Contains(res.SidecarLog, string(token)) {
			t.Error("the sidecar logged the token")
		}
	})

	t.Run("process specs", func(t *testing.T) {
		kubeconfig := filepath.Join(root, "volumes", injector.KubeconfigVolumeName, injector.KubeconfigFileName)
		for key, want := range map[string]string{
			injector.KubeconfigEnvVar: kubeconfig,
			injector.KubeAPIURLEnvVar: "http://127.0.0.1:" + strconv.Itoa(proxyPort),
			"POD_NAME":                pod.Name,
			"KUBERNETES_SERVICE_HOST": "127.0.0.1",
		} {
			if got, _ := res.App.Getenv(key); got != want {
				t.Errorf("app env %s=%q, want %q", key, got, want)
			}
		}
		if want := "--serviceaccount-dir=" + tokenDir; !slices.Contains(res.Sidecar.Argv, want) {
			t.Errorf("sidecar argv %q lacks %q", res.Sidecar.Argv, want)
		}
		if want := "--port=" + strconv.Itoa(proxyPort); !slices.Contains(res.Sidecar.Argv, want) {
			t.Errorf("sidecar argv %q lacks %q", res.Sidecar.Argv, want)
		}
		// The app container's own command, as the kubelet would expand and this package remap it.
		k, err := New(cfg, pod, root)
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.Process(ctx, "app", ProcessOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"/app", "--kubeconfig=" + kubeconfig, "--pod=" + pod.Name}; !slices.Equal(p.Argv, want) {
			t.Errorf("app argv %q, want %q", p.Argv, want)
		}
	})

	t.Run("volumes", func(t *testing.T) {
		proj := pod.Spec.Volumes[slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == injector.TokenVolumeName })].Projected
		claims := jwtClaims(t, token)
		if exp, iat := claims["exp"].(float64), claims["iat"].(float64); int64(exp-iat) != *proj.Sources[0].ServiceAccountToken.ExpirationSeconds {
			t.Errorf("token lifetime %v s, want the volume's expirationSeconds %d", exp-iat, *proj.Sources[0].ServiceAccountToken.ExpirationSeconds)
		}
		bound, _ := claims["kubernetes.io"].(map[string]any)
		if p, _ := bound["pod"].(map[string]any); p["name"] != pod.Name || p["uid"] != string(pod.UID) {
			t.Errorf("token bound to %v, want pod %s/%s", bound["pod"], pod.Name, pod.UID)
		}
		for name, want := range map[string][]byte{"ca.crt": cfg.CAData, "namespace": []byte(ns)} {
			got, err := os.ReadFile(filepath.Join(tokenDir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s = %q, %v; want %q", name, got, err, want)
			}
		}
		fi, err := os.Stat(filepath.Join(tokenDir, "token"))
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("token file mode %v, %v; want the volume's defaultMode 0644", fi.Mode().Perm(), err)
		}
		fi, err = os.Stat(filepath.Join(root, "volumes", injector.KubeconfigVolumeName))
		if err != nil || fi.Mode().Perm() != 0o777 {
			t.Errorf("emptyDir %s mode %v, %v; want 0777, as the kubelet creates it", injector.KubeconfigVolumeName, fi.Mode().Perm(), err)
		}
	})
}

// podReaderNamespace creates a namespace whose default ServiceAccount may list pods.
func podReaderNamespace(t *testing.T, admin *kubernetes.Clientset) string {
	t.Helper()
	ctx := t.Context()
	n, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "materialize-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := n.Name
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-lister"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "default-pod-lister"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-lister"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// buildProxy builds ./cmd/api-proxy into dir.
func buildProxy(dir string) error {
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "api-proxy"), "./cmd/api-proxy")
	cmd.Dir = "../../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building api-proxy: %w\n%s", err, out)
	}
	return nil
}

// jwtClaims decodes a JWT's payload without verifying it: the API server issued it.
func jwtClaims(t *testing.T, token []byte) map[string]any {
	t.Helper()
	parts := strings.Split(string(token), ".")
	if len(parts) != 3 {
		t.Fatalf("the token is not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func freePort(t *testing.T) int {
	t.Helper()
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

// TestKubectlModeListsPods materialises a pod injected in sidecar.mode kubectl: `kubectl
// proxy` as the sidecar (envtest's kubectl standing in for the kubectl image, with the
// in-cluster configuration it would read from the projected token volume, and its exec
// startup probe), then the init container that runs `api-proxy write-kubeconfig`, then the
// app, which lists pods through the kubeconfig that init container wrote, with client-go and
// with kubectl. The pod's annotations are patched first, as in TestInjectedPodListsPods.
func TestKubectlModeListsPods(t *testing.T) {
	ctx := t.Context()
	proxyPort := freePort(t)
	inj, err := injector.New(injector.Config{Version: "materialize", Sidecar: injector.SidecarConfig{
		Mode: injector.SidecarKubectl, Image: "registry.k8s.io/kubectl:v1.37.2", InitImage: "registry.example.com/api-proxy:test"}})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, inj)
	created, err := e.admin.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "tool", Annotations: map[string]string{
			injector.InjectAnnotation:    "true",
			injector.ProxyPortAnnotation: strconv.Itoa(proxyPort),
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "tool", Image: "registry.example.com/tool:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(created.Spec.InitContainers); n < 2 || created.Spec.InitContainers[1].Name != injector.KubeconfigInitName {
		t.Fatalf("the stored pod has no %s init container after the sidecar", injector.KubeconfigInitName)
	}
	root := t.TempDir()
	marker := filepath.Join(root, "exec-plugin-ran")
	pod := patchAsAttacker(t, e, created.Name, marker)

	res, err := Run(ctx, Options{
		Config: e.cfg, Pod: pod, Root: root,
		ProxyBinary:    e.proxy,
		KubectlSidecar: true,
		App:            []string{os.Args[0]},
		Kubectl:        e.kubectl,
	})
	if err != nil {
		t.Fatalf("materialising the pod: %v\nsidecar log:\n%s", err, res.SidecarLog)
	}
	if res.Sidecar.Argv[0] != e.kubectl || res.Sidecar.Argv[1] != "proxy" {
		t.Errorf("the sidecar ran %q, want kubectl proxy", res.Sidecar.Argv)
	}
	if res.KubeconfigInit == nil || res.KubeconfigInit.Argv[1] != "write-kubeconfig" {
		t.Fatalf("the kubeconfig init container did not run api-proxy write-kubeconfig: %+v", res.KubeconfigInit)
	}
	for way, names := range map[string][]string{
		"client-go through KUBECONFIG": res.Report.ClientGo,
		"HTTP through KUBE_API_URL":    res.Report.HTTP,
		"kubectl get pods":             res.Kubectl,
	} {
		if !slices.Contains(names, pod.Name) {
			t.Errorf("%s listed %q, want the pod %q among them", way, names, pod.Name)
		}
	}
	kubeconfig, _ := res.App.Getenv(injector.KubeconfigEnvVar)
	checkKubeconfigFile(t, kubeconfig, "http://127.0.0.1:"+strconv.Itoa(proxyPort), e.ns)
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the exec plugin of the patched annotation ran in the app: %v", err)
	}
}
