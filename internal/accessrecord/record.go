// Package accessrecord is the JSON record of what an app did through its api-proxy sidecar:
// the counters the sidecar keeps per (verb, API group, resource, subresource, namespace or
// non-resource URL, outcome), as `api-proxy access -o json` prints them. The sidecar writes
// it; `api-access-injector rbac` and `kubectl apiaccess rbac` read it. It imports only the
// standard library, so that the sidecar stays lean.
package accessrecord

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

const (
	// APIVersion is the record's apiVersion.
	APIVersion = "apiaccess.io/v1alpha1"
	// Kind is the record's kind.
	Kind = "AccessRecord"
)

// Outcome is what became of a request.
type Outcome string

const (
	// Allowed means the API server authorized the request (whatever its answer was after that,
	// other than a 401 or 403).
	Allowed Outcome = "allowed"
	// Forbidden means the API server answered 403: its authorizer refused the request.
	Forbidden Outcome = "forbidden"
	// Unauthorized means the API server answered 401: it did not accept the sidecar's token.
	Unauthorized Outcome = "unauthorized"
	// Refused means the sidecar's own filters refused the request (--reject-paths, --read-only,
	// ...); it never reached the API server.
	Refused Outcome = "refused"
	// Failed means the request did not get an answer from the API server (a network error,
	// a timeout).
	Failed Outcome = "failed"
)

// Outcomes lists every outcome, in the order they are documented.
var Outcomes = []Outcome{Allowed, Forbidden, Unauthorized, Refused, Failed}

// Record is what one sidecar recorded since it started.
type Record struct {
	// APIVersion is always APIVersion.
	APIVersion string `json:"apiVersion"`
	// Kind is always Kind.
	Kind string `json:"kind"`
	// Namespace is the pod's namespace.
	Namespace string `json:"namespace"`
	// ServiceAccount is the name of the pod's ServiceAccount, whose token the sidecar uses.
	ServiceAccount string `json:"serviceAccount"`
	// Pod is the pod's name.
	Pod string `json:"pod"`
	// Since is when the sidecar started counting.
	Since time.Time `json:"since"`
	// Requests are the counters, one per distinct request shape and outcome.
	Requests []Request `json:"requests"`
	// OtherCount counts the requests that did not fit in the bounded table of Requests.
	OtherCount int64 `json:"otherCount"`
	// Truncated is true when some requests were counted only in OtherCount: Requests is then
	// not the whole story.
	Truncated bool `json:"truncated"`
}

// Request is one counter: how many requests of one shape had one outcome. A resource
// request has Resource set; a non-resource request (/version, /healthz, /apis) has
// NonResourceURL set instead, and no group, resource or namespace.
type Request struct {
	// Verb is the API server's verb for the request: get, list, watch, create, update,
	// patch, delete, deletecollection (resource requests), or the lower-case HTTP method
	// (non-resource requests).
	Verb string `json:"verb"`
	// APIGroup is the resource's API group, "" for the core group.
	APIGroup string `json:"apiGroup"`
	// Resource is the plural resource name, such as pods.
	Resource string `json:"resource"`
	// Subresource, such as log or status, or "".
	Subresource string `json:"subresource"`
	// Namespace of the request; "" for a cluster-scoped request (a cluster-scoped resource,
	// or a namespaced resource across all namespaces).
	Namespace string `json:"namespace"`
	// NonResourceURL is the path of a non-resource request.
	NonResourceURL string `json:"nonResourceURL"`
	// Outcome is what became of these requests.
	Outcome Outcome `json:"outcome"`
	// Count is how many requests there were.
	Count int64 `json:"count"`
	// LastSeen is when the last of them was made.
	LastSeen time.Time `json:"lastSeen"`
}

var (
	// dnsLabel is a namespace name (RFC 1123 label).
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// dnsSubdomain is a ServiceAccount or Pod name (RFC 1123 subdomain).
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// word is a verb, a resource or a subresource: what RBAC rules hold.
	word = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// Validate reports every problem of r at once, each naming the field, the value and what is
// allowed.
func (r *Record) Validate() error {
	var errs []error
	bad := func(field string, value any, allowed string) {
		errs = append(errs, fmt.Errorf("%s: %q: %s", field, fmt.Sprint(value), allowed))
	}
	if r.APIVersion != APIVersion {
		bad("apiVersion", r.APIVersion, "must be "+APIVersion)
	}
	if r.Kind != Kind {
		bad("kind", r.Kind, "must be "+Kind)
	}
	if len(r.Namespace) > 63 || !dnsLabel.MatchString(r.Namespace) {
		bad("namespace", r.Namespace, "must be a namespace name (lower-case RFC 1123 label)")
	}
	if len(r.ServiceAccount) > 253 || !dnsSubdomain.MatchString(r.ServiceAccount) {
		bad("serviceAccount", r.ServiceAccount, "must be a ServiceAccount name (lower-case RFC 1123 subdomain)")
	}
	if r.Pod != "" && (len(r.Pod) > 253 || !dnsSubdomain.MatchString(r.Pod)) {
		bad("pod", r.Pod, "must be a pod name (lower-case RFC 1123 subdomain) or empty")
	}
	if r.OtherCount < 0 {
		bad("otherCount", r.OtherCount, "must not be negative")
	}
	for i, q := range r.Requests {
		errs = append(errs, q.validate(fmt.Sprintf("requests[%d].", i))...)
	}
	return errors.Join(errs...)
}

// validate returns every problem of q, each field named after prefix.
func (q *Request) validate(prefix string) []error {
	var errs []error
	bad := func(field string, value any, allowed string) {
		errs = append(errs, fmt.Errorf("%s%s: %q: %s", prefix, field, fmt.Sprint(value), allowed))
	}
	if !word.MatchString(q.Verb) {
		bad("verb", q.Verb, "must be a lower-case verb such as get, list or watch")
	}
	if !validOutcome(q.Outcome) {
		outs := make([]string, len(Outcomes))
		for i, o := range Outcomes {
			outs[i] = string(o)
		}
		bad("outcome", q.Outcome, "must be one of "+strings.Join(outs, ", "))
	}
	if q.Count < 0 {
		bad("count", q.Count, "must not be negative")
	}
	if q.NonResourceURL != "" {
		if !strings.HasPrefix(q.NonResourceURL, "/") || strings.ContainsAny(q.NonResourceURL, "?#\x00 ") {
			bad("nonResourceURL", q.NonResourceURL, "must be a path starting with / (no query)")
		}
		if q.APIGroup != "" || q.Resource != "" || q.Subresource != "" || q.Namespace != "" {
			bad("nonResourceURL", q.NonResourceURL, "must not come with apiGroup, resource, subresource or namespace")
		}
		return errs
	}
	if !word.MatchString(q.Resource) {
		bad("resource", q.Resource, "must be a lower-case plural resource name, or nonResourceURL must be set")
	}
	if q.Subresource != "" && !word.MatchString(q.Subresource) {
		bad("subresource", q.Subresource, "must be a lower-case subresource name or empty")
	}
	if q.APIGroup != "" && (len(q.APIGroup) > 253 || !dnsSubdomain.MatchString(q.APIGroup)) {
		bad("apiGroup", q.APIGroup, `must be an API group name (lower-case DNS subdomain) or "" for the core group`)
	}
	if q.Namespace != "" && (len(q.Namespace) > 63 || !dnsLabel.MatchString(q.Namespace)) {
		bad("namespace", q.Namespace, `must be a namespace name or "" for a cluster-scoped request`)
	}
	return errs
}

func validOutcome(o Outcome) bool {
	return slices.Contains(Outcomes, o)
}

// Decode reads one or more records: JSON objects one after another (what several runs of
// `api-proxy access -o json` print, concatenated), JSON arrays of them, or both. Each record
// is validated; the error names the record, the field, the value and what is allowed. Fields
// the record type does not know are ignored, so that a newer sidecar's record still reads.
func Decode(r io.Reader, source string) ([]Record, error) {
	dec := json.NewDecoder(r)
	var out []Record
	for n := 1; ; {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: record %d: not JSON: %w", source, n, err)
		}
		var batch []json.RawMessage
		if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && t[0] == '[' {
			if err := json.Unmarshal(raw, &batch); err != nil {
				return nil, fmt.Errorf("%s: record %d: %w", source, n, err)
			}
		} else {
			batch = []json.RawMessage{raw}
		}
		for _, one := range batch {
			var rec Record
			if err := json.Unmarshal(one, &rec); err != nil {
				return nil, fmt.Errorf("%s: record %d: not an %s: %w", source, n, Kind, err)
			}
			if err := rec.Validate(); err != nil {
				return nil, fmt.Errorf("%s: record %d (pod %q): %w", source, n, rec.Pod, err)
			}
			out = append(out, rec)
			n++
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no %s: give what `api-proxy access -o json` printed", source, Kind)
	}
	return out, nil
}
