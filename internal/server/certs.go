package server

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
	// rotator's defaults (1 year, 90 days and 12 hours), for tests.
	ServerCertDuration, LookaheadInterval, RotationCheckFrequency time.Duration
}

// Keys of the certificate Secret, as the rotator names them.
const (
	caCertKey  = "ca.crt"
	caKeyKey   = "ca.key"
	tlsCertKey = "tls.crt"
	tlsKeyKey  = "tls.key"
)

// certs is the certificate management of one replica: cert-controller's rotator, plus what
// keeps replicas that start together from fighting over the Secret.
//
// Every replica runs the rotator (no leader election) and writes through the API server's
// optimistic concurrency, so when two replicas write at once exactly one wins and the other
// gets a conflict. That conflict is the expected outcome, not an error: the loser re-reads
// and uses what the winner wrote. The rotator logs a conflict at error level with a stack
// trace, so the replicas settle it before it gets there:
//   - at start, bootstrap fills an empty or invalid Secret before the rotator's cache starts,
//     re-reading on a conflict; the rotator then finds a valid certificate and writes nothing
//     (it would otherwise reconcile the empty Secret it cached first and log
//     "secret is not well-formed" once the winner's certificate arrives);
//   - later (renewals, caBundle writes from a cache one write behind), the rotator writes
//     through conflictResolver, which re-reads on a conflict.
//
// Leader election for the rotator was the alternative: it needs a Lease and its RBAC, makes
// the non-leaders wait for files only the leader can vouch for, and a replica that loses its
// lease (an API server hiccup longer than the renew deadline) must exit, which a webhook
// that gates pod creation should not do for the sake of a yearly renewal.
type certs struct {
	cfg     *SelfManagedCerts
	rotator *rotator.CertRotator
	reader  client.Reader // uncached
	writer  client.Writer
	log     logr.Logger
}

// addCertRotator adds the certificate rotator to the manager. The returned channel is closed
// once the certificate is on disk and the caBundles are patched: only then may the webhook
// server start, since it reads the certificate when it starts.
func addCertRotator(mgr manager.Manager, certDir string, c *SelfManagedCerts) (*certs, <-chan struct{}, error) {
	names := c.DNSNames
	if len(names) == 0 {
		svc := c.ServiceName + "." + c.Namespace
		names = []string{svc + ".svc", c.ServiceName, svc, svc + ".svc.cluster.local"}
	}
	ready := make(chan struct{})
	cs := &certs{
		cfg:    c,
		reader: mgr.GetAPIReader(),
		writer: mgr.GetClient(),
		log:    ctrl.Log.WithName("certificates"),
		rotator: &rotator.CertRotator{
			SecretKey:      types.NamespacedName{Namespace: c.Namespace, Name: c.SecretName},
			CertDir:        certDir,
			CAName:         "api-access-injector-ca",
			CAOrganization: "api-access-injector",
			DNSName:        names[0],
			ExtraDNSNames:  names[1:],
			IsReady:        ready,
			Webhooks:       []rotator.WebhookInfo{{Name: c.WebhookConfigName, Type: rotator.Mutating}},
			// Every replica keeps the shared Secret and the caBundles current (see certs).
			RequireLeaderElection:  false,
			ServerCertDuration:     c.ServerCertDuration,
			LookaheadInterval:      c.LookaheadInterval,
			RotationCheckFrequency: c.RotationCheckFrequency,
			FieldOwner:             "api-access-injector",
		},
	}
	// The rotator writes the Secret and the webhook configuration with the manager's client
	// (AddRotator calls GetClient; nothing else can be injected): handing it a manager whose
	// client settles conflicts is how they stay out of its error log. The replica tests in
	// test/lifecycle fail if a library upgrade bypasses it.
	if err := rotator.AddRotator(conflictResolvingManager{Manager: mgr, certs: cs}, cs.rotator); err != nil {
		return nil, nil, fmt.Errorf("setting up certificate rotation: %w", err)
	}
	return cs, ready, nil
}

// bootstrap makes sure the Secret holds a valid CA and serving certificate before the rotator
// starts. Of replicas that start together against an empty Secret, one writes; the others'
// writes conflict, and they re-read and find its certificate.
func (c *certs) bootstrap(ctx context.Context) error {
	key := c.rotator.SecretKey
	err := retry.OnError(retry.DefaultBackoff, apierrors.IsConflict, func() error {
		secret := &corev1.Secret{}
		if err := c.reader.Get(ctx, key, secret); err != nil {
			return fmt.Errorf("reading Secret %s, where the certificates are kept (create it empty; the Helm chart does): %w", key, err)
		}
		if c.valid(secret) {
			c.log.Info("using the certificates in the Secret", "secret", key.String())
			return nil
		}
		data, err := c.generate()
		if err != nil {
			return err
		}
		secret.Data = data
		err = c.writer.Update(ctx, secret, client.FieldOwner(c.rotator.FieldOwner))
		if apierrors.IsConflict(err) {
			c.log.Info("another replica changed the Secret first; reading it again", "secret", key.String())
			return err
		}
		if err != nil {
			return fmt.Errorf("writing the certificates into Secret %s: %w", key, err)
		}
		c.log.Info("created a CA and a serving certificate", "secret", key.String(), "dnsNames", c.dnsNames())
		return nil
	})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("writing the certificates into Secret %s: it kept changing: %w", key, err)
	}
	return err
}

func (c *certs) dnsNames() []string {
	return append([]string{c.rotator.DNSName}, c.rotator.ExtraDNSNames...)
}

// generate makes a CA and a serving certificate as the rotator would, with its own functions
// and settings (AddRotator filled in the defaults), so that it accepts them as its own.
func (c *certs) generate() (map[string][]byte, error) {
	r := c.rotator
	begin := time.Now().Add(-time.Hour) // as the rotator does: tolerates clock skew
	ca, err := r.CreateCACert(begin, begin.Add(time.Hour+r.CaCertDuration))
	if err != nil {
		return nil, fmt.Errorf("creating the CA: %w", err)
	}
	crt, key, err := r.CreateCertPEM(ca, begin, begin.Add(time.Hour+r.ServerCertDuration))
	if err != nil {
		return nil, fmt.Errorf("creating the serving certificate: %w", err)
	}
	return map[string][]byte{caCertKey: ca.CertPEM, caKeyKey: ca.KeyPEM, tlsCertKey: crt, tlsKeyKey: key}, nil
}

// valid reports whether the Secret holds a CA and serving certificate that the rotator would
// keep: both valid beyond its look-ahead window, the certificate issued by the CA for the
// webhook's DNS name.
func (c *certs) valid(s *corev1.Secret) bool {
	r := c.rotator
	at := time.Now().Add(r.LookaheadInterval)
	okCA, _ := rotator.ValidCert(s.Data[caCertKey], s.Data[caCertKey], s.Data[caKeyKey], r.CAName, nil, at)
	okCert, _ := rotator.ValidCert(s.Data[caCertKey], s.Data[tlsCertKey], s.Data[tlsKeyKey], r.DNSName, r.ExtKeyUsages, at)
	return okCA && okCert
}

// conflictResolvingManager is the manager as the rotator sees it: the same, but with a
// client that settles write conflicts.
type conflictResolvingManager struct {
	manager.Manager
	certs *certs
}

// GetClient returns the manager's client, with conflicts on Update settled.
func (m conflictResolvingManager) GetClient() client.Client {
	return conflictResolver{Client: m.Manager.GetClient(), certs: m.certs}
}

// conflictResolver settles the rotator's conflicting updates (another replica wrote the same
// object since the rotator's cache last saw it), so that a race between replicas is not
// reported as an error:
//   - the Secret: if it now holds valid certificates, another replica renewed them; the
//     rotator's own, made at the same moment, are dropped and theirs are used;
//   - the webhook configuration: it is read again and the caBundle written again.
//
// Any other error, or a conflict that does not settle so, is returned as it was.
type conflictResolver struct {
	client.Client
	certs *certs
}

// Update updates obj, settling a conflict as described on conflictResolver.
func (c conflictResolver) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	err := c.Client.Update(ctx, obj, opts...)
	if !apierrors.IsConflict(err) {
		return err
	}
	switch o := obj.(type) {
	case *corev1.Secret:
		live := &corev1.Secret{}
		if gerr := c.certs.reader.Get(ctx, client.ObjectKeyFromObject(o), live); gerr != nil || !c.certs.valid(live) {
			return err
		}
		c.certs.log.Info("another replica renewed the certificates first; using theirs", "secret", client.ObjectKeyFromObject(o).String())
		return nil
	case *unstructured.Unstructured:
		if o.GetKind() != "MutatingWebhookConfiguration" {
			return err
		}
		bundle, ok := caBundleOf(o)
		if !ok {
			return err
		}
		rerr := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(o.GroupVersionKind())
			if err := c.certs.reader.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
				return err
			}
			if b, ok := caBundleOf(live); ok && b == bundle {
				return nil // another replica wrote the same CA
			}
			if err := setCABundle(live, bundle); err != nil {
				return err
			}
			return c.Client.Update(ctx, live, opts...)
		})
		if rerr != nil {
			return fmt.Errorf("writing the caBundle of %s again after a conflict: %w", o.GetName(), rerr)
		}
		c.certs.log.Info("the webhook configuration had changed since it was read; its caBundle is current", "name", o.GetName())
		return nil
	}
	return err
}

// caBundleOf returns the caBundle shared by every entry of a webhook configuration, and
// whether there is one.
func caBundleOf(wh *unstructured.Unstructured) (string, bool) {
	hooks, _, _ := unstructured.NestedSlice(wh.Object, "webhooks")
	var bundle string
	for i, h := range hooks {
		m, ok := h.(map[string]any)
		if !ok {
			return "", false
		}
		b, _, _ := unstructured.NestedString(m, "clientConfig", "caBundle")
		if b == "" || (i > 0 && b != bundle) {
			return "", false
		}
		bundle = b
	}
	return bundle, len(hooks) > 0
}

// setCABundle sets the caBundle of every entry, as the rotator does.
func setCABundle(wh *unstructured.Unstructured, bundle string) error {
	hooks, _, err := unstructured.NestedSlice(wh.Object, "webhooks")
	if err != nil {
		return err
	}
	for i, h := range hooks {
		m, ok := h.(map[string]any)
		if !ok {
			return fmt.Errorf("webhook %d is not an object", i)
		}
		if err := unstructured.SetNestedField(m, bundle, "clientConfig", "caBundle"); err != nil {
			return err
		}
		hooks[i] = m
	}
	return unstructured.SetNestedSlice(wh.Object, hooks, "webhooks")
}
