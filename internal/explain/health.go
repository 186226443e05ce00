package explain

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// health checks that the API server can call the webhook of one entry: endpoints ready, a
// caBundle that verifies the certificate the webhook serves for the name the API server
// calls, and neither about to expire.
func (e *Explainer) health(ctx context.Context, cc admissionregistrationv1.WebhookClientConfig) *Health {
	h := &Health{}
	var serverName, dialAddr string
	switch {
	case cc.Service != nil:
		port := int32(443)
		if cc.Service.Port != nil {
			port = *cc.Service.Port
		}
		h.Service = fmt.Sprintf("%s/%s:%d", cc.Service.Namespace, cc.Service.Name, port)
		// The API server calls a Service by this name
		// (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#service-reference).
		serverName = cc.Service.Name + "." + cc.Service.Namespace + ".svc"
		dialAddr = net.JoinHostPort(serverName, strconv.Itoa(int(port)))
		e.endpoints(ctx, h, cc.Service)
	case cc.URL != nil:
		h.URL = *cc.URL
		u, err := url.Parse(*cc.URL)
		if err != nil {
			h.Problems = append(h.Problems, fmt.Sprintf("clientConfig.url %q does not parse: %v", *cc.URL, err))
			return h
		}
		serverName = u.Hostname()
		dialAddr = u.Host
		if u.Port() == "" {
			dialAddr = net.JoinHostPort(u.Hostname(), "443")
		}
	default:
		h.Problems = append(h.Problems, "the entry has neither clientConfig.service nor clientConfig.url")
		return h
	}

	roots := x509.NewCertPool()
	h.CABundle.Source = "caBundle"
	if len(cc.CABundle) == 0 {
		h.CABundle.Error = "empty"
		h.Problems = append(h.Problems, "the caBundle is empty: the API server verifies the webhook against its own trust store, which does not hold a self-managed or cert-manager CA; "+
			"with self-managed certificates the webhook writes it once it runs, with cert-manager its CA injector does")
	} else {
		certs, err := parseCerts(cc.CABundle)
		if err != nil {
			h.CABundle.Error = err.Error()
			h.Problems = append(h.Problems, "the caBundle holds no valid PEM certificate: "+err.Error())
		}
		for i, c := range certs {
			roots.AddCert(c)
			if i == 0 {
				h.CABundle.Subject, h.CABundle.NotAfter = c.Subject.String(), c.NotAfter
			}
			if p := e.expiry("the caBundle's CA "+c.Subject.String(), c.NotAfter); p != "" {
				h.Problems = append(h.Problems, p)
			}
		}
	}

	chain, source, err := e.servingChain(ctx, dialAddr, serverName, cc.Service)
	if err != nil {
		h.ServingCertificate = &Certificate{Error: err.Error()}
		h.Problems = append(h.Problems, "could not read the serving certificate: "+err.Error())
	} else {
		leaf := chain[0]
		h.ServingCertificate = &Certificate{Source: source, Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, NotAfter: leaf.NotAfter}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, verr := leaf.Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: inter, CurrentTime: e.now()})
		h.CABundleVerifies = verr == nil && len(cc.CABundle) > 0
		if verr != nil && len(cc.CABundle) > 0 {
			h.Problems = append(h.Problems, fmt.Sprintf("the caBundle does not verify the serving certificate for %s: %v: the API server cannot call the webhook "+
				"(re-run the certificate's issuer or restart the webhook so that it writes the caBundle again)", serverName, verr))
		}
		if p := e.expiry("the serving certificate", leaf.NotAfter); p != "" {
			h.Problems = append(h.Problems, p)
		}
	}
	h.Healthy = len(h.Problems) == 0
	return h
}

func (e *Explainer) expiry(what string, notAfter time.Time) string {
	left := notAfter.Sub(e.now())
	switch {
	case left <= 0:
		return fmt.Sprintf("%s expired at %s", what, notAfter.UTC().Format(time.RFC3339))
	case left < e.opts.ExpiryWarning:
		return fmt.Sprintf("%s expires at %s, in %s (less than %s): it should have been renewed by now", what,
			notAfter.UTC().Format(time.RFC3339), left.Round(time.Minute), e.opts.ExpiryWarning)
	}
	return ""
}

// endpoints counts the ready and not-ready endpoints of the webhook's Service.
func (e *Explainer) endpoints(ctx context.Context, h *Health, svc *admissionregistrationv1.ServiceReference) {
	if _, err := e.client.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{}); err != nil {
		h.Problems = append(h.Problems, fmt.Sprintf("service %s/%s: %v", svc.Namespace, svc.Name, err))
		return
	}
	slices, err := e.client.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{discoveryv1.LabelServiceName: svc.Name}.String(),
	})
	if err != nil {
		h.Problems = append(h.Problems, fmt.Sprintf("endpoints of service %s/%s: %v", svc.Namespace, svc.Name, err))
		return
	}
	ready, notReady := 0, 0
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				ready++
			} else {
				notReady++
			}
		}
	}
	h.ReadyEndpoints, h.NotReadyEndpoints = &ready, &notReady
	if ready == 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("service %s/%s has no ready endpoint: no webhook replica is ready to be called "+
			"(kubectl -n %s get pods, and their logs)", svc.Namespace, svc.Name, svc.Namespace))
	}
}

// servingChain reads the certificate chain the webhook serves: by a TLS handshake when its
// address can be reached from here (a URL, or the Service's DNS name from inside the
// cluster), else, for a Service, from the Secret of type kubernetes.io/tls (or with a
// tls.crt) that the pods behind it mount.
func (e *Explainer) servingChain(ctx context.Context, addr, serverName string, svc *admissionregistrationv1.ServiceReference) ([]*x509.Certificate, string, error) {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: e.opts.DialTimeout}, Config: &tls.Config{
		ServerName: serverName,
		// Only to read what the server presents; it is verified against the caBundle after.
		InsecureSkipVerify: true, //nolint:gosec // verified by hand below
	}}
	dctx, cancel := context.WithTimeout(ctx, e.opts.DialTimeout)
	defer cancel()
	conn, dialErr := dialer.DialContext(dctx, "tcp", addr)
	if dialErr == nil {
		defer func() { _ = conn.Close() }() // only the handshake was wanted
		chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
		if len(chain) > 0 {
			return chain, "tls://" + addr, nil
		}
		dialErr = errors.New("the server presented no certificate")
	}
	if svc == nil {
		return nil, "", fmt.Errorf("TLS handshake with %s: %w", addr, dialErr)
	}
	chain, source, err := e.secretChain(ctx, svc)
	if err != nil {
		return nil, "", fmt.Errorf("TLS handshake with %s: %w; and from the pods' Secret: %w", addr, dialErr, err)
	}
	return chain, source, nil
}

func (e *Explainer) secretChain(ctx context.Context, ref *admissionregistrationv1.ServiceReference) ([]*x509.Certificate, string, error) {
	svc, err := e.client.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, "", fmt.Errorf("service %s/%s has no selector", ref.Namespace, ref.Name)
	}
	pods, err := e.client.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set(svc.Spec.Selector).String()})
	if err != nil {
		return nil, "", err
	}
	for _, p := range pods.Items {
		for _, v := range p.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			s, err := e.client.CoreV1().Secrets(ref.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, "", fmt.Errorf("secret %s/%s: %w", ref.Namespace, v.Secret.SecretName, err)
			}
			if crt := s.Data[corev1.TLSCertKey]; len(crt) > 0 {
				chain, err := parseCerts(crt)
				if err != nil {
					return nil, "", fmt.Errorf("secret %s/%s: %w", ref.Namespace, s.Name, err)
				}
				return chain, "secret " + ref.Namespace + "/" + s.Name, nil
			}
		}
	}
	return nil, "", fmt.Errorf("no pod of service %s/%s mounts a Secret holding %s", ref.Namespace, ref.Name, corev1.TLSCertKey)
}

// parseCerts reads every PEM certificate in data.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}
