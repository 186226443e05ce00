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
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/testenv"
)

// TestMain lets Run re-execute this test binary as the app (see AppMain).
func TestMain(m *testing.M) {
	if IsApp() {
		os.Exit(AppMain())
	}
	os.Exit(m.Run())
}

// TestInjectedPodListsPods creates an opted-in pod through the webhook, materialises what the
// API server stored, runs the api-proxy sidecar from its spec and an app with the app
// container's environment, and checks that the app lists pods through the sidecar three
// ways while holding no credential itself.
func TestInjectedPodListsPods(t *testing.T) {
	ctx := t.Context()
	ctrl.SetLogger(logr.Discard())

	// Building the proxy overlaps with starting the control plane.
	binDir := t.TempDir()
	built := make(chan error, 1)
	go func() { built <- buildProxy(binDir) }()

	healthPort, proxyPort := freePort(t), freePort(t)
	inj, err := injector.New(injector.Config{Version: "materialize",
		Sidecar: injector.SidecarConfig{Image: "registry.example.com/api-proxy:test", HealthPort: int32(healthPort)}})
	if err != nil {
		t.Fatal(err)
	}
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err) // names the command that provisions the binaries
	}
	hooks, err := testenv.LoadWebhooks("../../config/webhook/manifests.yaml")
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
	created, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
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
	pod, err := admin.CoreV1().Pods(ns).Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) == 0 || pod.Spec.InitContainers[0].Name != injector.SidecarName {
		t.Fatalf("the stored pod has no %s sidecar: the webhook did not inject it", injector.SidecarName)
	}

	if err := <-built; err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	res, err := Run(ctx, Options{
		Config: cfg, Pod: pod, Root: root,
		ProxyBinary: filepath.Join(binDir, "api-proxy"),
		App:         []string{os.Args[0]},
		Kubectl:     filepath.Join(assets, "kubectl"),
	})
	if err != nil {
		t.Fatalf("materialising the pod: %v", err)
	}

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
		kc, err := os.ReadFile(filepath.Join(root, "volumes", injector.KubeconfigVolumeName, injector.KubeconfigFileName))
		if err != nil || string(kc) != pod.Annotations[injector.KubeconfigAnnotation] {
			t.Errorf("kubeconfig file %q, %v; want the pod's %s annotation", kc, err, injector.KubeconfigAnnotation)
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
	cmd.Dir = "../.."
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
