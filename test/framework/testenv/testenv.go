// Package testenv starts envtest's real kube-apiserver and etcd the way a cluster runs them,
// for the project's end-to-end tests.
//
// It differs from a bare envtest.Environment in two ways that matter to this project:
// the binaries are found where `make envtest` puts them (and a missing binary is an error that
// names that target, never a skip), and the ServiceAccount admission plugin, which envtest
// disables, is switched back on, so pods get their serviceAccountName and kube-api-access
// volume before any webhook sees them, as in a real cluster.
package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// KubernetesVersion returns the Kubernetes version (x.y.z) of the envtest binaries that `make
// envtest` provisions: ENVTEST_K8S_VERSION when set, otherwise the release that matches
// k8s.io/api in go.mod (v0.37.2 is Kubernetes 1.37.2), the rule of hack/kube-version.sh, so that
// go.mod is the one place the version is written. It returns "unknown" if go.mod cannot be read.
func KubernetesVersion() string {
	v, err := kubernetesVersion()
	if err != nil {
		return "unknown"
	}
	return v
}

// kubernetesVersion is KubernetesVersion, with the reason when it cannot be found. It asks the
// go command (tests and the hack tools run inside the module), once.
var kubernetesVersion = sync.OnceValues(func() (string, error) {
	if v := os.Getenv("ENVTEST_K8S_VERSION"); v != "" {
		return v, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/api").Output()
	if err != nil {
		return "", fmt.Errorf("finding the Kubernetes version from k8s.io/api in go.mod (go list -m k8s.io/api): %w", err)
	}
	v := strings.TrimSpace(string(out))
	minorPatch, ok := strings.CutPrefix(v, "v0.")
	if !ok {
		return "", fmt.Errorf("k8s.io/api is at %q in go.mod: want v0.Y.Z (Kubernetes 1.Y.Z)", v)
	}
	return "1." + minorPatch, nil
})

// AssetsDir returns the directory holding kube-apiserver, etcd and kubectl: KUBEBUILDER_ASSETS
// when set, otherwise the store `make envtest` and setup-envtest write to. It fails with a
// message naming the make target when a binary is missing.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		store, err := envtest.SetupEnvtestDefaultBinaryAssetsDirectory()
		if err != nil {
			return "", fmt.Errorf("locating envtest binaries: %w", err)
		}
		version, err := kubernetesVersion()
		if err != nil {
			return "", fmt.Errorf("locating envtest binaries without KUBEBUILDER_ASSETS: %w", err)
		}
		dir = filepath.Join(store, version+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	}
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("envtest binary %s not found in %s: run `make envtest` "+
				"(`make test` runs it too) to provision Kubernetes %s, or set KUBEBUILDER_ASSETS", name, dir, KubernetesVersion())
		}
	}
	return dir, nil
}

// New returns an envtest environment using the provisioned binaries, with the ServiceAccount
// admission plugin on. Callers may set WebhookInstallOptions before calling Start.
func New() (*envtest.Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir}
	// envtest passes --disable-admission-plugins=ServiceAccount; a real cluster runs that
	// plugin before any webhook, and projected service-account tokens need the
	// serviceAccountName it sets.
	env.ControlPlane.GetAPIServer().Configure().Set("disable-admission-plugins", "")
	return env, nil
}

// Start starts a new environment and returns it with an admin rest.Config. The caller stops it.
// The MutatingWebhookConfiguration files given, if any, are installed pointing at envtest's
// local webhook server (see LoadWebhooks).
func Start(webhookFiles ...string) (*envtest.Environment, *rest.Config, error) {
	env, err := New()
	if err != nil {
		return nil, nil, err
	}
	if len(webhookFiles) > 0 {
		hooks, err := LoadWebhooks(webhookFiles...)
		if err != nil {
			return nil, nil, err
		}
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{MutatingWebhooks: hooks}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest (binaries in %s): %w", env.BinaryAssetsDirectory, err)
	}
	return env, cfg, nil
}

// LoadWebhooks reads MutatingWebhookConfiguration files for envtest's WebhookInstallOptions.
// envtest points each entry at its local server as https://host:port/ + service.path, so the
// leading slash of the path is dropped here: the URL path is then the one the server serves.
func LoadWebhooks(paths ...string) ([]*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	var out []*admissionregistrationv1.MutatingWebhookConfiguration
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := yaml.UnmarshalStrict(data, cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for i := range cfg.Webhooks {
			if s := cfg.Webhooks[i].ClientConfig.Service; s != nil && s.Path != nil {
				*s.Path = strings.TrimPrefix(*s.Path, "/")
			}
		}
		out = append(out, cfg)
	}
	return out, nil
}

// Grant creates a Role named name with rules in namespace ns, and binds it to the
// ServiceAccount sa there: what a test's app may do, so that a refusal is the proxy's.
func Grant(ctx context.Context, cs kubernetes.Interface, ns, sa, name string, rules ...rbacv1.PolicyRule) error {
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      rules,
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
	}, metav1.CreateOptions{})
	return err
}
