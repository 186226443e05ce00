package server

import (
	"crypto/tls"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// CertificateExpiryMetric is the gauge of the serving certificate's NotAfter, in seconds since
// the epoch: the chart's alert ApiAccessInjectorCertificateExpiring fires when it comes near,
// whichever way the certificate is issued (self-managed, cert-manager, provided).
const CertificateExpiryMetric = "apiaccess_serving_certificate_expiry_timestamp_seconds"

// certExpiry reads the serving certificate from the certificate directory at every scrape, so
// that the gauge follows each rotation (the kubelet updates the Secret volume; the webhook
// server reloads the same file) with no state of its own to go stale. A missing or unreadable
// certificate exports no sample, which an absent() alert can catch.
type certExpiry struct {
	dir  atomic.Pointer[string]
	desc *prometheus.Desc
}

var (
	expiry = &certExpiry{desc: prometheus.NewDesc(CertificateExpiryMetric,
		"Expiry time (NotAfter) of the webhook's serving certificate, in seconds since the epoch.", nil, nil)}
	registerExpiry sync.Once
)

// watchCertExpiry exports the expiry of the certificate in dir on the manager's metrics
// endpoint. The registry is global, so the collector is registered once; the directory is
// that of the last server built (one per process, except in tests).
func watchCertExpiry(dir string) {
	expiry.dir.Store(&dir)
	registerExpiry.Do(func() { metrics.Registry.MustRegister(expiry) })
}

// Describe implements prometheus.Collector.
func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	dir := c.dir.Load()
	if dir == nil {
		return
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(*dir, "tls.crt"), filepath.Join(*dir, "tls.key"))
	if err != nil || pair.Leaf == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(pair.Leaf.NotAfter.Unix()))
}
