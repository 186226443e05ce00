package materialize

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RootCAConfigMap is the ConfigMap the controller-manager publishes in every namespace with
// the cluster's CA bundle under the key "ca.crt".
const RootCAConfigMap = "kube-root-ca.crt"

// EnsureRootCA creates or updates namespace's kube-root-ca.crt ConfigMap with caPEM (for
// envtest, the rest.Config's CAData), standing in for the controller-manager, which envtest
// does not run.
func EnsureRootCA(ctx context.Context, cs kubernetes.Interface, namespace string, caPEM []byte) error {
	if len(caPEM) == 0 {
		return fmt.Errorf("materialize: no CA bundle for %s/%s", namespace, RootCAConfigMap)
	}
	cms := cs.CoreV1().ConfigMaps(namespace)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: RootCAConfigMap}, Data: map[string]string{"ca.crt": string(caPEM)}}
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *corev1.ConfigMap
		if cur, err = cms.Get(ctx, RootCAConfigMap, metav1.GetOptions{}); err == nil {
			cur.Data = cm.Data
			_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("materialize: writing %s/%s: %w", namespace, RootCAConfigMap, err)
	}
	return nil
}
