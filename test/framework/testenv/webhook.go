package testenv

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/internal/server"
)

// StartWebhook runs the webhook process, built as the webhook command builds it, on the
// address and certificate envtest configured the installed webhooks with, and waits until it
// is ready. register, when not nil, adds a test's own handlers before it starts. The returned
// function stops it and may be called more than once.
func StartWebhook(env *envtest.Environment, cfg *rest.Config, inj *injector.Injector, register func(manager.Manager)) (stop func(), err error) {
	return StartWebhookWith(env, cfg, server.Options{Injector: inj}, register)
}

// StartWebhookWith is StartWebhook with the process's options (server.Options) given; their
// address, certificate, probe and metrics fields are set here.
func StartWebhookWith(env *envtest.Environment, cfg *rest.Config, opts server.Options, register func(manager.Manager)) (stop func(), err error) {
	probe, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	o := env.WebhookInstallOptions
	opts.CertDir, opts.Host, opts.Port = o.LocalServingCertDir, o.LocalServingHost, o.LocalServingPort
	opts.HealthProbeBindAddress, opts.MetricsBindAddress = probe, "0"
	mgr, err := server.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	if register != nil {
		register(mgr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				log.Printf("stopping the in-process webhook: %v", err)
			}
		})
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if resp, err := http.Get("http://" + probe + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("webhook manager stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	return nil, fmt.Errorf("webhook not ready on %s after 30s", probe)
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}
