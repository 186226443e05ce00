package server

import (
	"fmt"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// SelfManagedCerts configures the webhook to create and rotate its own CA and serving
// certificate, with no cert-manager: they are kept in a Secret shared by the replicas, which
// the kubelet mounts at the certificate directory, and the CA is patched into the caBundle of
// every entry of the webhook configuration.
type SelfManagedCerts struct {
	// Namespace and SecretName locate the Secret holding the CA and serving certificate.
	Namespace, SecretName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundles are kept current.
	WebhookConfigName string
	// ServiceName is the webhook's Service; the certificate is valid for its DNS names.
	ServiceName string
	// DNSNames replaces the Service's DNS names, for tests that call the webhook by another name.
	DNSNames []string
	// ServerCertDuration, LookaheadInterval and RotationCheckFrequency override the
	// rotator's defaults (10 years, 90 days and 12 hours), for tests.
	ServerCertDuration, LookaheadInterval, RotationCheckFrequency time.Duration
}

// addCertRotator adds the certificate rotator to the manager. The returned channel is closed
// once the certificate is on disk and the caBundles are patched: only then may the webhook
// server start, since it reads the certificate when it starts.
func addCertRotator(mgr manager.Manager, certDir string, c *SelfManagedCerts) (<-chan struct{}, error) {
	names := c.DNSNames
	if len(names) == 0 {
		svc := c.ServiceName + "." + c.Namespace
		names = []string{svc + ".svc", c.ServiceName, svc, svc + ".svc.cluster.local"}
	}
	ready := make(chan struct{})
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: c.Namespace, Name: c.SecretName},
		CertDir:        certDir,
		CAName:         "api-access-injector-ca",
		CAOrganization: "api-access-injector",
		DNSName:        names[0],
		ExtraDNSNames:  names[1:],
		IsReady:        ready,
		Webhooks:       []rotator.WebhookInfo{{Name: c.WebhookConfigName, Type: rotator.Mutating}},
		// Every replica keeps the shared Secret and the caBundles current; writes that race
		// are resolved by the API server's optimistic concurrency.
		RequireLeaderElection:  false,
		ServerCertDuration:     c.ServerCertDuration,
		LookaheadInterval:      c.LookaheadInterval,
		RotationCheckFrequency: c.RotationCheckFrequency,
		FieldOwner:             "api-access-injector",
	})
	if err != nil {
		return nil, fmt.Errorf("setting up certificate rotation: %w", err)
	}
	return ready, nil
}
