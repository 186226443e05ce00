package testenv

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Shared is one environment for the tests of a package, started when a test first asks for it
// and stopped by the package's TestMain: a suite whose tests need an API server only in part
// pays for starting one only then.
type Shared struct {
	// Configure, when set, adjusts the environment before it starts (CRDs, webhooks).
	Configure func(*envtest.Environment)

	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	err  error
}

// Config starts the environment on first use and returns a copy of its admin configuration.
// It fails the test, with the reason, if the environment cannot start.
func (s *Shared) Config(t testing.TB) *rest.Config {
	t.Helper()
	s.once.Do(func() {
		env, err := New()
		if err != nil {
			s.err = err
			return
		}
		if s.Configure != nil {
			s.Configure(env)
		}
		if s.cfg, s.err = env.Start(); s.err != nil {
			s.err = fmt.Errorf("starting envtest: %w", s.err)
			return
		}
		s.env = env
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return rest.CopyConfig(s.cfg)
}

// Env starts the environment on first use and returns it, for what Config does not give (such
// as adding users).
func (s *Shared) Env(t testing.TB) *envtest.Environment {
	t.Helper()
	s.Config(t)
	return s.env
}

// Stop stops the environment if it was started. TestMain calls it after m.Run.
func (s *Shared) Stop() {
	if s.env == nil {
		return
	}
	if err := s.env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
}
