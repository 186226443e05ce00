// Package server assembles the webhook process: a controller-runtime manager serving the
// injection webhook over TLS, health and readiness probes, and Prometheus metrics. The
// `webhook` command and the end-to-end tests build it the same way.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
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
	// ShutdownDelay is how long the process keeps serving, reporting not ready, once asked to
	// stop (see Server.Start). 0 stops at once.
	ShutdownDelay time.Duration
	// Namespaces gives the handlers the namespace defaults of a pod's namespace. nil: a
	// metadata-only informer of the cluster's namespaces (webhook.NamespaceCache); tests set
	// another to play a stale cache.
	Namespaces webhook.Namespaces
}

// Server is the webhook process: a controller-runtime manager, whose Start adds what the
// webhook needs around the manager's own: certificates in place before it starts, and a
// graceful stop.
type Server struct {
	manager.Manager

	opts  Options
	certs *certs
	log   logr.Logger
	// stopping is set when the stop begins: readiness fails from then on, and every answer
	// closes its connection.
	stopping atomic.Bool
}

// New returns the webhook process, which serves once started.
func New(restConfig *rest.Config, o Options) (*Server, error) {
	if o.ShutdownDelay < 0 {
		return nil, fmt.Errorf("shutdown delay %v is negative", o.ShutdownDelay)
	}
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
	s := &Server{Manager: mgr, opts: o, log: ctrl.Log.WithName("server")}
	namespaces := o.Namespaces
	if namespaces == nil {
		nc := webhook.NewNamespaceCache(mgr.GetCache(), mgr.GetAPIReader())
		if err := mgr.Add(nc); err != nil {
			return nil, err
		}
		namespaces = nc
	}
	watchCertExpiry(o.CertDir)
	// The manager starts the webhook server once mgr.GetWebhookServer has been called (at
	// once if the manager runs already): so that is done only once there is a certificate.
	serve := func() {
		webhook.Register(closingMux{server: mgr.GetWebhookServer(), stopping: &s.stopping}, o.Injector, namespaces)
	}
	if o.SelfManagedCerts == nil {
		serve()
	} else {
		certs, ready, err := addCertRotator(mgr, o.CertDir, o.SelfManagedCerts)
		if err != nil {
			return nil, err
		}
		s.certs = certs
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
	if err := mgr.AddReadyzCheck("stopping", func(*http.Request) error {
		if s.stopping.Load() {
			return errors.New("the webhook is stopping")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Start runs the process until ctx is done, then stops it gracefully, and returns nil if it
// stopped cleanly.
//
// With self-managed certificates it first makes sure the Secret holds valid certificates
// (see certs.bootstrap). When ctx is done (SIGTERM), it reports not ready at once and keeps
// serving for Options.ShutdownDelay, each answer closing its connection; then it stops
// accepting connections, finishes the requests in flight and returns.
//
// Why keep serving: a Service keeps sending new connections to a terminating pod until every
// node has heard that the endpoint is gone, which takes a moment after the pod is deleted
// and longer on a large cluster; a webhook that stops at once has the API server fail those
// admissions (or, under failurePolicy Ignore, admit pods without their sidecar). See
// https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination and
// https://learnk8s.io/graceful-shutdown. Why close connections: the API server keeps
// connections open, and one that the server closes while idle can race a new request on it;
// a connection that the answer itself closes cannot.
func (s *Server) Start(ctx context.Context) error {
	if s.certs != nil {
		if err := s.certs.bootstrap(ctx); err != nil {
			return err
		}
	}
	mctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Manager.Start(mctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	s.log.Info("stopping: reporting not ready, serving on until the endpoint is removed", "delay", s.opts.ShutdownDelay.String())
	if s.opts.ShutdownDelay > 0 {
		t := time.NewTimer(s.opts.ShutdownDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case err := <-done:
			return err
		}
	}
	s.log.Info("stopping: no longer accepting connections, finishing the requests in flight")
	stop()
	return <-done
}

// closingMux registers the webhook's handlers so that, once the process is stopping, every
// answer closes its connection (see Server.Start).
type closingMux struct {
	server   ctrlwebhook.Server
	stopping *atomic.Bool
}

// Register registers h at path on the webhook server.
func (m closingMux) Register(path string, h http.Handler) {
	m.server.Register(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.stopping.Load() {
			// net/http closes the connection after a response carrying this header.
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	}))
}
