package webhook

import (
	"context"
	"fmt"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Namespaces tells the handler the annotations of a pod's namespace, for the defaults a
// platform team sets there (injector.NamespaceDefaultAnnotations).
type Namespaces interface {
	// Annotations returns the annotations of the namespace, as recently known; nil when the
	// namespace is not known. The map must not be changed.
	Annotations(ctx context.Context, name string) map[string]string
}

// NamespaceCache is Namespaces from a metadata-only informer of the cluster's namespaces,
// read without a copy, so that an admission costs a map lookup rather than a call to the
// API server (issue 9's budget). A namespace the informer does not hold yet (created a
// moment ago) is read from the API server instead.
//
// A cache can lag: a pod created just after its namespace's annotations changed may be
// injected with the old defaults. The chart's ValidatingAdmissionPolicy reads the
// namespace's annotations as the API server knows them (namespaceObject) and refuses a pod
// injected without a default it should have had, so a stale cache fails closed.
type NamespaceCache struct {
	cache cache.Cache
	store atomic.Pointer[toolscache.Store]
	live  client.Reader
}

// NewNamespaceCache returns the lookup, reading namespaces from c once Start has registered
// the informer, and from the API server through live (an uncached reader) until then and for
// namespaces the informer does not hold yet.
func NewNamespaceCache(c cache.Cache, live client.Reader) *NamespaceCache {
	return &NamespaceCache{cache: c, live: live}
}

// Start registers the namespace informer with the cache and waits until ctx is done: a
// manager.Runnable, started with the manager's cache. An informer that cannot be had is
// logged, and every lookup reads from the API server instead.
func (n *NamespaceCache) Start(ctx context.Context) error {
	informer, err := n.cache.GetInformer(ctx, namespaceMetadata())
	if err != nil {
		ctrl.Log.WithName("namespaces").Error(err, "watching namespaces; each admission reads its pod's namespace from the API server instead")
		return nil
	}
	indexed, ok := informer.(interface{ GetStore() toolscache.Store })
	if !ok {
		return fmt.Errorf("watching namespaces: the informer %T has no store", informer)
	}
	store := indexed.GetStore()
	n.store.Store(&store)
	<-ctx.Done()
	return nil
}

func namespaceMetadata() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
}

// Annotations implements Namespaces.
func (n *NamespaceCache) Annotations(ctx context.Context, name string) map[string]string {
	if store := n.store.Load(); store != nil {
		if obj, ok, err := (*store).GetByKey(name); err == nil && ok {
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				return m.Annotations
			}
		}
	}
	m := namespaceMetadata()
	if err := n.live.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
		return nil // the policy holds without it
	}
	return m.Annotations
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every replica admits pods,
// so every replica watches namespaces.
func (n *NamespaceCache) NeedLeaderElection() bool { return false }
