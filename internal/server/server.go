// Package server assembles the webhook process: a controller-runtime manager serving the
// injection webhook over TLS, health and readiness probes, and Prometheus metrics. The
// `webhook` command and the end-to-end tests build it the same way.
package server

import (
	"context"
	"crypto/tls"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/webhook"
)

// Options configure the webhook process.
type Options struct {
	// Injector mutates the pods.
	Injector *injector.Injector
	// CertDir holds tls.crt and tls.key; they are reloaded when they change.
	CertDir string
	// Host and Port the webhook serves HTTPS on; an empty Host means all interfaces.
	Host string
	Port int
	// HealthProbeBindAddress serves /healthz and /readyz; "0" disables.
	HealthProbeBindAddress string
	// MetricsBindAddress serves /metrics; "0" disables.
	MetricsBindAddress string
	// SelfManagedCerts, when set, has the process create and rotate its certificate; when
	// nil it serves what CertDir holds.
	SelfManagedCerts *SelfManagedCerts
}

// New returns a manager that serves the webhook once started.
func New(restConfig *rest.Config, o Options) (manager.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	server := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.Host,
		Port:    o.Port,
		CertDir: o.CertDir,
		// HTTP/1.1 only: the API server does not need HTTP/2, and it keeps the server out of
		// reach of HTTP/2 stream-reset floods (CVE-2023-44487).
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		WebhookServer:          server,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeBindAddress,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	// The manager starts the webhook server once mgr.GetWebhookServer has been called (at
	// once if the manager runs already): so that is done only once there is a certificate.
	serve := func() { webhook.Register(mgr.GetWebhookServer(), o.Injector) }
	if o.SelfManagedCerts == nil {
		serve()
	} else {
		ready, err := addCertRotator(mgr, o.CertDir, o.SelfManagedCerts)
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			select {
			case <-ready:
				serve()
			case <-ctx.Done():
			}
			return nil
		})); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready once the webhook server serves TLS with a certificate: before that, the API
	// server could not call it, and a Service must not send it admissions.
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return nil, err
	}
	return mgr, nil
}
