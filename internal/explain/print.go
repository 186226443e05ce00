package explain

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes a report for a person.
func Print(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}

	p("%s %s/%s (%s)", r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Object.Source)
	p("  %s", r.Verdict)
	p("")
	label := r.Namespace.Label
	if label == "" {
		label = "(absent)"
	}
	p("Namespace %s\tapiaccess.io/injection=%s\texcluded: %s", r.Namespace.Name, label, yes(r.Namespace.Excluded))
	if len(r.Annotations) == 0 {
		p("Annotations\t(no apiaccess.io/ annotation)")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Annotations)) {
		p("Annotation\t%s=%q", k, r.Annotations[k])
	}
	p("")
	p("Webhook configuration %s", r.WebhookConfiguration)
	for _, wh := range r.Webhooks {
		mark := "  -"
		if wh.Applies {
			mark = "  >"
		}
		p("%s %s\tmode %s\tfailurePolicy %s\tapplies: %s", mark, wh.Name, wh.Mode, wh.FailurePolicy, yes(wh.Applies))
		if wh.Why != "" {
			p("      not called: %s", wh.Why)
		}
		for _, c := range wh.MatchConditions {
			v := "error: " + c.Error
			if c.Value != nil {
				v = fmt.Sprint(*c.Value)
			}
			p("      matchCondition %s = %s", c.Name, v)
		}
	}
	p("")
	p("Decision\t%s", r.Decision.Reason)
	if r.Decision.Refused != "" {
		p("  refused\t%s", r.Decision.Refused)
	}
	for _, w := range r.Decision.Warnings {
		p("  warning\t%s", w)
	}
	if d := r.DryRun; d != nil {
		p("")
		switch {
		case !d.Admitted:
			p("Dry-run create\trefused: %s", d.Error)
		default:
			p("Dry-run create\tadmitted, injected: %s", yes(d.Injected))
		}
		for _, w := range d.Warnings {
			p("  warning\t%s", w)
		}
		for _, c := range d.Changes {
			by := ""
			if !c.Injector {
				by = "  (other admission)"
			}
			v := ""
			if c.Value != "" {
				v = " = " + c.Value
			}
			p("  %s %s%s%s", c.Op, c.Path, v, by)
		}
	}
	if h := r.Health; h != nil {
		p("")
		target := h.Service
		if target == "" {
			target = h.URL
		}
		p("Webhook health\t%s\thealthy: %s", target, yes(h.Healthy))
		if h.ReadyEndpoints != nil {
			p("  endpoints\t%d ready, %d not ready", *h.ReadyEndpoints, *h.NotReadyEndpoints)
		}
		p("  caBundle\t%s", certLine(h.CABundle))
		if h.ServingCertificate != nil {
			p("  serving certificate\t%s", certLine(*h.ServingCertificate))
		}
		p("  caBundle verifies it\t%s", yes(h.CABundleVerifies))
	}
	if run := r.Running; run != nil {
		p("")
		p("Running pod\tphase %s\tinjected: %s", run.Phase, yes(run.Injected))
		if run.Status != nil {
			p("  injected by version\t%s (port %d, containers %s)", run.Status.Version, run.Status.Port, strings.Join(run.Status.Containers, ","))
		}
		if s := run.Sidecar; s != nil {
			p("  sidecar\tready: %s, started: %s, restarts: %d, %s", yes(s.Ready), yes(s.Started), s.Restarts, s.State)
		}
	}
	if len(r.Problems) > 0 {
		p("")
		p("Problems")
		for _, pr := range r.Problems {
			p("  ! %s", pr)
		}
	}
	return tw.Flush()
}

func certLine(c Certificate) string {
	if c.Error != "" {
		return "error: " + c.Error
	}
	s := c.Subject
	if len(c.DNSNames) > 0 {
		s += " for " + strings.Join(c.DNSNames, ",")
	}
	if !c.NotAfter.IsZero() {
		s += ", expires " + c.NotAfter.UTC().Format(time.RFC3339)
	}
	if c.Source != "" && c.Source != "caBundle" {
		s += " (from " + c.Source + ")"
	}
	return s
}
