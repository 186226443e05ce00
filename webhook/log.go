package webhook

import (
	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
)

// decisionMessage is the message of the one line logged per admission.
const decisionMessage = "admission decision"

// decisionLog writes the one info line of each admission: request ID, namespace, owner,
// mode, result, reason (the metric's label value), the human-readable message, and the number
// of warnings. It logs names only: never the pod's spec, where env values and the like live,
// and so never a token.
//
// It costs nothing when info is off (one level check). When the logger is zap's, as in the
// binary, the fields are written as typed zap fields, so that a line costs no boxing of each
// value into an interface, as logr's key-value list would
// (BenchmarkServeHTTP/api-access-injector-info-log measures it).
type decisionLog struct {
	zap  *zap.Logger // nil unless the sink is zapr's
	logr logr.Logger
	mode string
}

func newDecisionLog(l logr.Logger, mode string) decisionLog {
	d := decisionLog{logr: l, mode: mode}
	if u, ok := l.GetSink().(zapr.Underlier); ok {
		d.zap = u.GetUnderlying()
	}
	return d
}

func (d decisionLog) enabled() bool {
	if d.zap != nil {
		return d.zap.Core().Enabled(zapcore.InfoLevel)
	}
	return d.logr.Enabled()
}

// write logs one admission; the caller checked enabled.
func (d decisionLog) write(st *state, out outcome, resp *response) {
	req := &st.req
	owner := ownerOf(&req.Object)
	if d.zap != nil {
		if ce := d.zap.Check(zapcore.InfoLevel, decisionMessage); ce != nil {
			ce.Write(
				zap.String("requestID", st.uid),
				zap.String("namespace", req.Namespace),
				zap.String("owner", owner),
				zap.String("mode", d.mode),
				zap.String("result", resultLabels[out.result]),
				zap.String("reason", reasonLabel(out.reason)),
				zap.String("message", resp.message),
				zap.Int("warnings", len(resp.warnings)),
			)
		}
		return
	}
	d.logr.Info(decisionMessage, "requestID", st.uid, "namespace", req.Namespace, "owner", owner, "mode", d.mode,
		"result", resultLabels[out.result], "reason", reasonLabel(out.reason), "message", resp.message, "warnings", len(resp.warnings))
}

// ownerOf names what the pod belongs to, for a person reading the log: kind/name of its
// controller (or first) owner reference, else Pod/ and its generateName (a pod of a
// ReplicaSet has no name yet at admission), else Pod/ and its name; empty for a request that
// carried no pod.
func ownerOf(pod *corev1.Pod) string {
	refs := pod.OwnerReferences
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return refs[i].Kind + "/" + refs[i].Name
		}
	}
	switch {
	case len(refs) > 0:
		return refs[0].Kind + "/" + refs[0].Name
	case pod.GenerateName != "":
		return "Pod/" + pod.GenerateName
	case pod.Name != "":
		return "Pod/" + pod.Name
	}
	return ""
}
