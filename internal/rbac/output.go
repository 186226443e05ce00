package rbac

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// Report is the -o json output: the objects to apply, as a v1 List (`jq .objects | kubectl
// apply -f -`), and per ServiceAccount what they were made from, what was denied and, with
// --compare, what was granted and never used.
type Report struct {
	// Objects is a v1 List of every generated object.
	Objects map[string]any `json:"objects"`
	// ServiceAccounts are the suggestions, one per ServiceAccount.
	ServiceAccounts []Suggestion `json:"serviceAccounts"`
}

// WriteJSON writes the Report of suggestions.
func WriteJSON(w io.Writer, suggestions []Suggestion) error {
	items := []any{}
	for i := range suggestions {
		for _, o := range suggestions[i].Objects() {
			m, err := clean(o)
			if err != nil {
				return err
			}
			items = append(items, m)
		}
	}
	r := Report{
		Objects:         map[string]any{"apiVersion": "v1", "kind": "List", "items": items},
		ServiceAccounts: suggestions,
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// clean turns an object into a map without the empty creationTimestamp that metav1.ObjectMeta
// always writes, so the output reads as if written by hand.
func clean(o any) (map[string]any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	return m, nil
}

// WriteYAML writes the suggestions as multi-document YAML that `kubectl apply -f -` takes:
// the objects, with everything else (where they come from, what was denied, what is unused)
// in comments.
func WriteYAML(w io.Writer, suggestions []Suggestion) error {
	var b strings.Builder
	for i := range suggestions {
		if err := writeSuggestion(&b, &suggestions[i]); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSuggestion(b *strings.Builder, s *Suggestion) error {
	c := func(format string, args ...any) { comment(b, fmt.Sprintf(format, args...)) }
	pods := make([]string, len(s.Pods))
	for i, p := range s.Pods {
		pods[i] = "pod/" + p
	}
	since := ""
	if !s.Since.IsZero() {
		since = " since " + s.Since.UTC().Format("2006-01-02T15:04:05Z")
	}
	b.WriteString("---\n")
	c("Least-privilege RBAC for ServiceAccount %s, from what the api-proxy %s of %s recorded%s: %d %s.",
		s.ServiceAccount, plural(int64(len(pods)), "sidecar"), strings.Join(pods, ", "), since, s.Requests, plural(s.Requests, "request"))
	if len(s.Grants) == 0 {
		c("The app made no request that needs a permission: there is nothing to grant.")
	} else {
		c("Apply with kubectl apply -f -. Rules list exactly what was used; other namespaces get a Role there, and only")
		c("cluster-scoped requests (cluster-scoped resources, all namespaces at once, non-resource URLs) a ClusterRole.")
	}
	for _, w := range s.Warnings {
		c("Warning: %s.", w)
	}
	if n := s.NotAuthorized; len(n) > 0 {
		var parts []string
		if k := n[accessrecord.Unauthorized]; k > 0 {
			parts = append(parts, fmt.Sprintf("%d unauthorized (the API server did not accept the token)", k))
		}
		if k := n[accessrecord.Refused]; k > 0 {
			parts = append(parts, fmt.Sprintf("%d refused by the sidecar's own filters (--reject-paths, --read-only...)", k))
		}
		c("Not a matter of RBAC, so not below: %s.", strings.Join(parts, ", "))
	}
	for i, o := range s.Objects() {
		m, err := clean(o)
		if err != nil {
			return err
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	if len(s.Denied) > 0 {
		b.WriteString("---\n")
		c("Denied: the API server answered 403 (forbidden) to these requests. They are NOT granted above; if the")
		c("app should be allowed, add the rule to the Role or ClusterRole named.")
		for _, g := range s.Denied {
			if err := commentRules(b, s, g.Namespace, g.Rules, nil); err != nil {
				return err
			}
		}
	}
	if u := s.Unused; u != nil {
		b.WriteString("---\n")
		if !u.Asked {
			c("--compare: not answered.")
		} else {
			c("--compare: what ServiceAccount %s may do today and the app never did, as the API server's authorizer", s.ServiceAccount)
			c("answers a SelfSubjectRulesReview made as the ServiceAccount (its Roles there and its cluster-wide")
			c("ClusterRoleBindings), less what every ServiceAccount may do. A wildcard (*) is listed when it grants more")
			c("than was used, which it always does.")
		}
		for _, n := range u.Notes {
			c("Note: %s.", n)
		}
		if u.Asked && len(u.Namespaces) == 0 {
			c("Nothing: the ServiceAccount may do only what the app used.")
		}
		for _, un := range u.Namespaces {
			rules := make([]Rule, len(un.Rules))
			for i, r := range un.Rules {
				rules[i] = Rule{PolicyRule: r}
			}
			if err := commentRules(b, s, un.Namespace, rules, &un); err != nil {
				return err
			}
		}
	}
	return nil
}

// commentRules writes rules as commented YAML under a heading naming the scope and the
// generated object the rules would go into (for denied rules) or the scope only (unused).
func commentRules(b *strings.Builder, s *Suggestion, ns string, rules []Rule, unused *Unused) error {
	var head string
	switch {
	case unused != nil && ns == "":
		head = "non-resource URLs (cluster-wide):"
	case unused != nil:
		head = "namespace " + ns + ":"
		if unused.EvaluationError != "" {
			head += " (evaluation error: " + unused.EvaluationError + ")"
		}
		if len(rules) == 0 {
			head += " nothing unused"
		}
	case ns == "":
		head = "cluster: ClusterRole " + Name(s.ServiceAccount, ns)
	default:
		head = "namespace " + ns + ": Role " + Name(s.ServiceAccount, ns)
	}
	if unused == nil && !slices.ContainsFunc(s.Grants, func(g Grant) bool { return g.Namespace == ns }) {
		head += " (not generated above, as nothing was allowed there: create it with its binding)"
	}
	comment(b, "")
	comment(b, head)
	for _, r := range rules {
		line := "  - " + flowRule(r.PolicyRule)
		if unused == nil {
			line += fmt.Sprintf("  # %d %s", r.Count, plural(r.Count, "request"))
		}
		comment(b, line)
	}
	return nil
}

// flowRule writes a rule on one line, in YAML's flow style.
func flowRule(r rbacv1.PolicyRule) string {
	var parts []string
	field := func(name string, vs []string) {
		if len(vs) > 0 {
			j, _ := json.Marshal(vs) // a JSON array of strings is a YAML flow sequence
			parts = append(parts, name+": "+string(j))
		}
	}
	field("apiGroups", r.APIGroups)
	field("resources", r.Resources)
	field("resourceNames", r.ResourceNames)
	field("nonResourceURLs", r.NonResourceURLs)
	field("verbs", r.Verbs)
	return "{" + strings.Join(parts, ", ") + "}"
}

func comment(b *strings.Builder, line string) {
	if line == "" {
		b.WriteString("#\n")
		return
	}
	b.WriteString("# " + line + "\n")
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
