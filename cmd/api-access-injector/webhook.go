package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/api-access-injector/api-access-injector/internal/server"
	"github.com/api-access-injector/api-access-injector/internal/version"
)

// webhookFlags are the flags of `api-access-injector webhook`.
type webhookFlags struct {
	injectorFlags
	certDir      string
	webhookPort  int
	probeAddr    string
	metricsAddr  string
	logLevel     string
	logFormatDev bool
	selfManaged  bool
	certSecret   string
	webhookName  string
	serviceName  string
	stopDelay    time.Duration
}

// runWebhook runs `api-access-injector webhook`: it parses the flags, checks the whole
// configuration (reporting every problem at once), sets up logging, and serves until a
// signal stops it.
func runWebhook(args []string) error {
	var f webhookFlags
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	f.bind(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := f.config()
	if err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	zl, err := setupLogging(cfg.logLevel, f.logFormatDev)
	if err != nil {
		return err
	}
	// The standard library's HTTP servers (the webhook's and the probes') log through it too.
	// Their only messages are about connections a client dropped, e.g. during a TLS handshake
	// cut short by a graceful stop: nothing an operator needs to act on, so at info level.
	defer zap.RedirectStdLog(zl.Named("http"))()
	return serve(cfg.server)
}

// bind registers the webhook's flags on fs.
func (f *webhookFlags) bind(fs *flag.FlagSet) {
	f.injectorFlags.bind(fs)
	fs.StringVar(&f.certDir, "cert-dir", filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs"),
		"Directory holding the serving certificate (tls.crt) and key (tls.key). They are reloaded when they change.")
	fs.IntVar(&f.webhookPort, "webhook-port", 9443, "Port the admission webhook serves HTTPS on.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", `Address of the Prometheus /metrics endpoint; "0" disables it.`)
	fs.StringVar(&f.logLevel, "log-level", "info", "Log level: debug, info, warn or error.")
	fs.BoolVar(&f.logFormatDev, "log-console", false, "Write human-readable console logs instead of JSON.")
	fs.BoolVar(&f.selfManaged, "self-managed-certs", false, "Create and rotate the CA and serving certificate in the Secret --cert-secret, and keep the caBundle of --webhook-config-name current. "+
		"The Secret must be mounted at --cert-dir. Without it, the server serves what --cert-dir holds.")
	fs.StringVar(&f.certSecret, "cert-secret", "api-access-injector-tls", "With --self-managed-certs: the Secret, in the injector's namespace, that holds the certificates.")
	fs.StringVar(&f.webhookName, "webhook-config-name", "api-access-injector", "With --self-managed-certs: the MutatingWebhookConfiguration whose caBundle is kept current.")
	fs.StringVar(&f.serviceName, "service-name", "api-access-injector-webhook", "With --self-managed-certs: the webhook's Service, whose DNS names the certificate is for.")
	fs.DurationVar(&f.stopDelay, "shutdown-delay", 0, "On SIGTERM, how long to keep serving, reporting not ready, so that the Service's endpoint "+
		"is removed everywhere before the server stops accepting connections (e.g. 10s). In-flight requests are then finished. "+
		"0 stops at once.")
}

// webhookConfig is the checked configuration of the webhook process.
type webhookConfig struct {
	server   server.Options
	logLevel zapcore.Level
}

// config checks the flags and the injector's configuration, and returns every problem at
// once.
func (f *webhookFlags) config() (webhookConfig, error) {
	inj, errs := f.load()
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", f.logLevel))
	}
	if f.webhookPort < 1 || f.webhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port: %d is out of range 1-65535", f.webhookPort))
	}
	if f.stopDelay < 0 || f.stopDelay > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--shutdown-delay: %v is out of range 0s-10m", f.stopDelay))
	}
	certs, certErrs := f.certs()
	errs = append(errs, certErrs...)
	if err := errors.Join(errs...); err != nil {
		return webhookConfig{}, err
	}
	return webhookConfig{logLevel: level, server: server.Options{
		Injector:               inj,
		CertDir:                f.certDir,
		Port:                   f.webhookPort,
		HealthProbeBindAddress: f.probeAddr,
		MetricsBindAddress:     f.metricsAddr,
		SelfManagedCerts:       certs,
		ShutdownDelay:          f.stopDelay,
	}}, nil
}

// certs checks where the serving certificate comes from: the Secret the process manages
// itself (--self-managed-certs), or the files in --cert-dir.
func (f *webhookFlags) certs() (*server.SelfManagedCerts, []error) {
	var errs []error
	if !f.selfManaged {
		for _, name := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(filepath.Join(f.certDir, name)); err != nil {
				errs = append(errs, fmt.Errorf("--cert-dir: %s is missing (or use --self-managed-certs): %w", name, err))
			}
		}
		return nil, errs
	}
	for _, required := range []struct{ flag, value string }{
		{"--cert-secret", f.certSecret}, {"--webhook-config-name", f.webhookName}, {"--service-name", f.serviceName},
	} {
		if required.value == "" {
			errs = append(errs, fmt.Errorf("%s: required with --self-managed-certs", required.flag))
		}
	}
	return &server.SelfManagedCerts{Namespace: f.namespace, SecretName: f.certSecret, WebhookConfigName: f.webhookName, ServiceName: f.serviceName}, errs
}

// setupLogging sends controller-runtime's and client-go's logs to one zap logger, as JSON
// lines (or console lines with console set), and returns it.
func setupLogging(level zapcore.Level, console bool) (*zap.Logger, error) {
	zl, err := logConfig(level, console).Build()
	if err != nil {
		return nil, fmt.Errorf("building logger: %w", err)
	}
	logger := zapr.NewLogger(zl)
	ctrl.SetLogger(logger)
	// client-go logs through klog: the same JSON lines, not klog's own text format.
	klog.SetLogger(logger.WithName("client-go"))
	return zl, nil
}

// serve starts the webhook process with opts and runs it until a signal stops it.
func serve(opts server.Options) error {
	log := ctrl.Log.WithName("setup")
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("finding the API server: %w", err)
	}
	srv, err := server.New(restConfig, opts)
	if err != nil {
		return err
	}
	cfg := opts.Injector.Config()
	log.Info("starting api-access-injector webhook", "version", version.Get(), "port", opts.Port,
		"sidecarImage", cfg.Sidecar.Image, "excludedNamespaces", excludedNamespaces(cfg), "selfManagedCerts", opts.SelfManagedCerts != nil,
		"shutdownDelay", opts.ShutdownDelay.String())
	// A first SIGTERM or SIGINT stops gracefully (see server.Server.Start); a second exits at once.
	if err := srv.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("running the webhook: %w", err)
	}
	log.Info("stopped")
	return nil
}

// logConfig is the webhook's zap configuration: JSON (or console) at level, timestamps in
// RFC 3339 as the sidecar writes them, and no sampling, since each admission decision is
// logged once at info and a sampled log could not answer why a given pod was (not)
// injected (zap's production default drops repeats beyond 100 a second:
// https://pkg.go.dev/go.uber.org/zap#SamplingConfig).
func logConfig(level zapcore.Level, console bool) zap.Config {
	zc := zap.NewProductionConfig()
	if console {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.Sampling = nil
	zc.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	return zc
}
