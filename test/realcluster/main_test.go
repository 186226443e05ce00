//go:build realcluster

package realcluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestMain installs the chart once, as users do (helm install, default self-managed
// certificates, two replicas, only image.* values changed), and waits until the webhook
// serves: Deployment rolled out, caBundle written by the webhook itself.
func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realcluster:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	for _, v := range []string{"KUBECONFIG", "HELM"} {
		if os.Getenv(v) == "" {
			return 0, fmt.Errorf("%s is not set: this suite runs against the one-node cluster of `make e2e` (or `make e2e-up`, then `make e2e-test`)", v)
		}
	}
	var err error
	if restCfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG")); err != nil {
		return 0, fmt.Errorf("loading KUBECONFIG: %w", err)
	}
	restCfg.QPS, restCfg.Burst = 100, 200
	if clientset, err = kubernetes.NewForConfig(restCfg); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) //nolint:forbidigo // TestMain has no t.Context()
	defer cancel()
	// A release left by an interrupted run on a cluster kept up for development.
	if _, err := helm(ctx, "status", releaseName, "-n", releaseNS); err == nil {
		if _, err := helm(ctx, "uninstall", releaseName, "-n", releaseNS, "--wait"); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	args := []string{"install", releaseName, chartDir, "-n", releaseNS, "--create-namespace"}
	for _, v := range imageValues {
		args = append(args, "--set", v)
	}
	if _, err := helm(ctx, args...); err != nil {
		return 0, err
	}
	if err := waitWebhookReady(ctx); err != nil {
		return 0, fmt.Errorf("after helm install: %w", err)
	}
	fmt.Printf("realcluster: chart installed and serving in %s\n", time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	// Leave a cluster kept up for development as it was (the lifecycle test uninstalls it
	// itself; this is for runs that skipped it with -run).
	_, err = helm(context.Background(), "uninstall", releaseName, "-n", releaseNS, "--ignore-not-found", "--wait") //nolint:forbidigo // TestMain has no t.Context()
	return code, err
}
