package testenv

import (
	"slices"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Warnings collects the warnings the API server sends back to a client: admission warnings,
// Pod Security's, the admission policies'. Set it as a rest.Config's WarningHandler; it is safe
// for concurrent use.
type Warnings struct {
	mu   sync.Mutex
	list []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *Warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// All returns the warnings collected so far.
func (w *Warnings) All() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.list)
}

// Take returns the warnings collected so far and forgets them.
func (w *Warnings) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// Contains reports whether a collected warning contains s.
func (w *Warnings) Contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.list, func(m string) bool { return strings.Contains(m, s) })
}

// ClientWithWarnings returns a clientset for a copy of cfg whose warnings go to a new Warnings.
func ClientWithWarnings(cfg *rest.Config) (*kubernetes.Clientset, *Warnings, error) {
	w := &Warnings{}
	c := rest.CopyConfig(cfg)
	c.WarningHandler = w
	cs, err := kubernetes.NewForConfig(c)
	return cs, w, err
}
