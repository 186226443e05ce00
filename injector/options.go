package injector

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Options are the per-pod settings, resolved from the pod's annotations and the Config.
type Options struct {
	ProxyPort              int32
	TokenAudience          string
	TokenExpirationSeconds int64
	ReadOnly               bool
	IsolateToken           bool
	// Transparent points the target containers' in-cluster configuration at the sidecar.
	Transparent bool
	// Containers names the containers to wire; nil means all but the sidecar.
	Containers []string
	// AllowExec lets exec and attach through the proxy (unless ReadOnly, which wins).
	AllowExec bool
	// AccessLog makes the sidecar log every API request (--access-log).
	AccessLog bool
	// Resources of the sidecar: the configuration's, with the pod's overrides (see
	// parseResources). Shared with the configuration: copy before changing.
	Resources corev1.ResourceRequirements
}

// userAnnotations are the pod annotation keys users set, in the order of annotations.go
// (TestUserAnnotationsMatchTheConstants keeps the two in step).
var userAnnotations = []string{
	InjectAnnotation,
	ProxyPortAnnotation,
	TokenAudienceAnnotation,
	TokenExpirationSecondsAnnotation,
	ReadOnlyAnnotation,
	IsolateTokenAnnotation,
	ContainersAnnotation,
	TransparentAnnotation,
	AllowExecAnnotation,
	AccessLogAnnotation,
	ProxyCPURequestAnnotation,
	ProxyCPULimitAnnotation,
	ProxyMemoryRequestAnnotation,
	ProxyMemoryLimitAnnotation,
}

// writtenAnnotations are the keys under AnnotationPrefix that the injector itself writes, now
// or in an earlier version: a pod carrying them (a re-applied injected manifest) is not
// refused for them.
var writtenAnnotations = []string{StatusAnnotation, KubeconfigAnnotation}

// UserAnnotations returns the pod annotation keys users set, in the order of the contract.
func UserAnnotations() []string { return slices.Clone(userAnnotations) }

// UnknownAnnotationMessage is the refusal reason for a pod annotation key under
// AnnotationPrefix that is neither one users set nor one the injector writes. Its shape is
// stable: the chart's ValidatingAdmissionPolicy gives the same message for workloads.
func UnknownAnnotationMessage(key string) string {
	return fmt.Sprintf("annotation %s: unknown key; the keys users set are %s", key, strings.Join(userAnnotations, ", "))
}

// ParseOptions resolves a pod's options. Precedence: a pod annotation wins over the
// configuration; the namespace label only decides whether a pod is injected (see Decide),
// never how. Every invalid annotation is reported, in one *Refusal, and so is every unknown
// key under AnnotationPrefix: a typo such as apiaccess.io/readonly would otherwise silently
// do nothing (https://github.com/linkerd/linkerd2/issues/3739).
func ParseOptions(annotations map[string]string, cfg *Config) (Options, error) {
	o := Options{
		ProxyPort:              cfg.ProxyPort,
		TokenAudience:          cfg.TokenAudience,
		TokenExpirationSeconds: cfg.TokenExpirationSeconds,
	}
	var r Refusal
	var unknown []string
	for key := range annotations {
		if strings.HasPrefix(key, AnnotationPrefix) && !slices.Contains(userAnnotations, key) && !slices.Contains(writtenAnnotations, key) {
			unknown = append(unknown, key)
		}
	}
	slices.Sort(unknown)
	for _, key := range unknown {
		r.because(ReasonRefusedAnnotation)
		r.Reasons = append(r.Reasons, UnknownAnnotationMessage(key))
	}
	if v, ok := annotations[ProxyPortAnnotation]; ok {
		n, err := parseInt(v, MinProxyPort, MaxProxyPort)
		switch {
		case err != nil:
			r.annotation(ProxyPortAnnotation, v, err.Error())
		case int32(n) == cfg.Sidecar.HealthPort: //nolint:gosec // n is a port, in range: parseInt checked it
			r.annotation(ProxyPortAnnotation, v, fmt.Sprintf("port %d is the sidecar's health port; choose another port from %d to %d", n, MinProxyPort, MaxProxyPort))
		default:
			o.ProxyPort = int32(n) //nolint:gosec // n is a port, in range: parseInt checked it
		}
	}
	if v, ok := annotations[TokenExpirationSecondsAnnotation]; ok {
		n, err := parseInt(v, MinTokenExpirationSeconds, MaxTokenExpirationSeconds)
		if err != nil {
			r.annotation(TokenExpirationSecondsAnnotation, v, err.Error())
		}
		o.TokenExpirationSeconds = n
	}
	if v, ok := annotations[TokenAudienceAnnotation]; ok {
		if strings.TrimSpace(v) != v || v == "" {
			r.annotation(TokenAudienceAnnotation, v, "must be a non-empty audience without surrounding spaces; remove the annotation to use the API server's audience")
		}
		o.TokenAudience = v
	}
	o.ReadOnly = parseBool(&r, annotations, ReadOnlyAnnotation)
	o.IsolateToken = parseBool(&r, annotations, IsolateTokenAnnotation)
	// Every boolean is read before the combinations are checked, in the order the chart's
	// workload policy reports them too.
	o.Transparent = parseBool(&r, annotations, TransparentAnnotation)
	if o.ReadOnly {
		// A read-only pod keeps no credential of its own: with its own token the app would
		// write straight to the API server, and read-only would be advice, not a boundary.
		// So read-only implies isolate-token, and the one combination that would leave the app
		// a token is refused rather than silently overridden.
		if v := annotations[IsolateTokenAnnotation]; v == "false" {
			r.annotation(IsolateTokenAnnotation, v, ReadOnlyIsolateTokenAdvice)
		}
		o.IsolateToken = true
	}
	if o.Transparent {
		// The in-cluster token mount is where transparent mode mounts its own files, and an
		// app left with its own token could bypass the proxy it was pointed at.
		if v := annotations[IsolateTokenAnnotation]; v == "false" && !o.ReadOnly {
			r.annotation(IsolateTokenAnnotation, v, TransparentIsolateTokenAdvice)
		}
		o.IsolateToken = true
	}
	if v, ok := annotations[ContainersAnnotation]; ok {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				r.annotation(ContainersAnnotation, v, "must be a comma-separated list of container names, with no empty entry")
				break
			}
			o.Containers = append(o.Containers, name)
		}
	}
	o.AllowExec = parseBool(&r, annotations, AllowExecAnnotation)
	o.AccessLog = parseBool(&r, annotations, AccessLogAnnotation)
	o.Resources = parseResources(&r, annotations, cfg)
	return o, r.orNil()
}

// ReadOnlyIsolateTokenAdvice ends the refusal of isolate-token "false" on a read-only pod. Its
// wording is stable: the chart's ValidatingAdmissionPolicy gives the same message for workloads.
const ReadOnlyIsolateTokenAdvice = `a pod with ` + ReadOnlyAnnotation + `: "true" keeps no service-account token of its own, ` +
	`or the app could write with it without going through the proxy; remove the annotation (read-only implies it) ` +
	`or set ` + ReadOnlyAnnotation + `: "false"`

// TransparentIsolateTokenAdvice ends the refusal of isolate-token "false" on a transparent
// pod. Its wording is stable: the chart's ValidatingAdmissionPolicy gives the same message.
const TransparentIsolateTokenAdvice = `a pod with ` + TransparentAnnotation + `: "true" gets the sidecar's service-account files ` +
	`in place of its own token; remove the annotation (transparent implies it) or set ` + TransparentAnnotation + `: "false"`

// decimal is the only spelling of an integer annotation: no sign, no leading zero, no
// spaces. strconv.ParseInt alone would read "+8001" and "08001" as 8001, so a value that
// other tools (a policy, a reviewer's eye) read differently would still be accepted.
var decimal = regexp.MustCompile(`^[1-9][0-9]*$`)

// parseInt parses a decimal integer within [lo, hi], spelled as decimal allows.
func parseInt(v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if !decimal.MatchString(v) || err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("must be an integer from %d to %d", lo, hi)
	}
	return n, nil
}

// parseBool reads an optional "true"/"false" annotation. Only those two spellings are
// accepted: a near miss such as "yes" or "True" is refused rather than silently read as
// false (https://github.com/linkerd/linkerd2/issues/3739).
func parseBool(r *Refusal, annotations map[string]string, key string) bool {
	v, ok := annotations[key]
	if !ok {
		return false
	}
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	r.annotation(key, v, `must be "true" or "false"`)
	return false
}
