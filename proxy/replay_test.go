package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReplayBudget checks that concurrent large writes keep no more bodies for a retry than
// the budget holds, that the others still reach the API server whole, and that the budget
// comes back once the transport is done with each body.
func TestReplayBudget(t *testing.T) {
	const (
		writes = 8
		size   = 64 << 10
		budget = 2*size + size/2 // room for two bodies
	)
	arrived := make(chan struct{}, writes)
	release := make(chan struct{})
	var mu sync.Mutex
	var inUse []int64 // budget in use when each write reached the upstream
	var f *fixture
	f = newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		inUse = append(inUse, budget-f.srv.up.replay.avail.Load())
		mu.Unlock()
		arrived <- struct{}{}
		<-release // every write is in flight at once
		if err != nil || len(b) != size || strings.Trim(string(b), "x") != "" {
			http.Error(w, "body damaged", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}), func(c *Config) { c.ReplayBufferSize = budget })

	body := bytes.Repeat([]byte("x"), size)
	codes := make(chan int, writes)
	for range writes {
		go func() {
			req := newRequest(t, http.MethodPost, f.front.URL+"/api/v1/namespaces/default/configmaps", bytes.NewReader(body))
			resp, err := f.front.Client().Do(req)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range writes {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("not every write reached the upstream: a write waits for the budget instead of being sent unbuffered")
		}
	}
	mu.Lock()
	final := budget - f.srv.up.replay.avail.Load()
	mu.Unlock()
	close(release)
	for range writes {
		if code := <-codes; code != http.StatusCreated {
			t.Errorf("write answered %d, want 201", code)
		}
	}
	if final != 2*size {
		t.Errorf("with %d writes of %d bytes in flight, %d bytes of the %d-byte budget are in use; want %d (two bodies kept, the rest unbuffered)",
			writes, size, final, budget, 2*size)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.up.replay.avail.Load() != budget {
		if time.Now().After(deadline) {
			t.Fatalf("budget %d after the writes, want all %d back", f.srv.up.replay.avail.Load(), budget)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReplayOverBudgetPassesOn401 checks that a body the budget cannot hold is sent once: a
// 401 to it is passed on, since there is nothing to send again.
func TestReplayOverBudgetPassesOn401(t *testing.T) {
	var calls int
	var mu sync.Mutex
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		calls++
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer token-b" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}), func(c *Config) { c.ReplayBufferSize = 10 })
	f.srv.tokens.interval = time.Hour // only a 401 makes the proxy read the file
	f.srv.tokens.nextCheck.Store(time.Now().Add(time.Hour).UnixNano())
	f.writeToken("token-b")

	for _, tt := range []struct {
		body      string
		wantCode  int
		wantCalls int
	}{
		{body: strings.Repeat("x", 11), wantCode: 401, wantCalls: 1}, // over the budget: sent once
		{body: "small", wantCode: 201, wantCalls: 1},                 // token-b was read on the 401 above
	} {
		mu.Lock()
		calls = 0
		mu.Unlock()
		resp, _ := f.do(newRequest(t, http.MethodPost, f.front.URL+"/api/v1/namespaces/default/configmaps", strings.NewReader(tt.body)))
		mu.Lock()
		calls := calls
		mu.Unlock()
		if resp.StatusCode != tt.wantCode || calls != tt.wantCalls {
			t.Errorf("body of %d bytes: %d after %d upstream calls; want %d after %d", len(tt.body), resp.StatusCode, calls, tt.wantCode, tt.wantCalls)
		}
	}
}
