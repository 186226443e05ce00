package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const listPath = "/api/v1/namespaces/" + benchNS + "/pods"

// once sends one GET of the pod list and reads the whole answer.
func once(ctx context.Context, t *target) error {
	resp, err := t.get(ctx, listPath)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", t.name, resp.Status)
	}
	return err
}

// latencies sends n sequential GETs, one client, and returns their durations.
func latencies(ctx context.Context, t *target, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := once(ctx, t); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// closedLoop runs clients concurrent senders for d and counts the answers.
func closedLoop(ctx context.Context, t *target, clients int, d time.Duration) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var okN, failN atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := once(ctx, t); err == nil {
					okN.Add(1)
				} else if ctx.Err() == nil {
					failN.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return okN.Load(), failN.Load()
}

// watchDelays opens one watch on pod-0 through every target at once, changes the pod n
// times, gap apart, and returns, per target, the time from each change to its event, and how
// many events never arrived. The same change reaches every watch, so the API server's own
// delay is common to all.
func watchDelays(ctx context.Context, f *fixture, targets []*target, n int, gap time.Duration) (map[string][]time.Duration, map[string]int, error) {
	pod, err := f.admin.CoreV1().Pods(benchNS).Get(ctx, "pod-0", metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	sent := make([]time.Time, n)
	var mu sync.Mutex
	arrived := map[string][]time.Time{}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range targets {
		arrived[t.name] = make([]time.Time, n)
		resp, err := t.get(wctx, listPath+"?watch=1&fieldSelector=metadata.name%3Dpod-0&resourceVersion="+pod.ResourceVersion)
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, nil, fmt.Errorf("watch through %s: %s", t.name, resp.Status)
		}
		wg.Go(func() {
			defer func() { _ = resp.Body.Close() }()
			dec := json.NewDecoder(resp.Body)
			for {
				var ev struct {
					Object struct {
						Metadata struct {
							Annotations map[string]string `json:"annotations"`
						} `json:"metadata"`
					} `json:"object"`
				}
				if dec.Decode(&ev) != nil {
					return
				}
				now := time.Now()
				i, err := strconv.Atoi(ev.Object.Metadata.Annotations["bench/seq"])
				if err == nil && i >= 0 && i < n {
					mu.Lock()
					arrived[t.name][i] = now
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"bench/seq":"%d"}}}`, i)
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		if _, err := f.admin.CoreV1().Pods(benchNS).Patch(ctx, "pod-0", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return nil, nil, err
		}
		time.Sleep(gap)
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	delays, missed := map[string][]time.Duration{}, map[string]int{}
	for name, times := range arrived {
		for i, at := range times {
			if at.IsZero() {
				missed[name]++
				continue
			}
			delays[name] = append(delays[name], at.Sub(sent[i]))
		}
	}
	return delays, missed, nil
}

// rotation keeps clients senders on each target, then rotates the token (a new one in the
// file, the old one revoked by deleting the Secret it is bound to) and counts the answers and
// failures during the next window. The direct client keeps the old token: its failures show
// that the revocation took effect within the window.
func rotation(ctx context.Context, f *fixture, targets []*target, clients int, window time.Duration) (map[string][2]int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var counting atomic.Bool
	counts := map[string]*[2]atomic.Int64{}
	var wg sync.WaitGroup
	for _, t := range targets {
		c := &[2]atomic.Int64{}
		counts[t.name] = c
		for range clients {
			wg.Go(func() {
				for ctx.Err() == nil {
					err := once(ctx, t)
					if !counting.Load() || ctx.Err() != nil {
						continue
					}
					c[0].Add(1)
					if err != nil {
						c[1].Add(1)
					}
				}
			})
		}
	}
	time.Sleep(time.Second)
	if _, err := f.writeToken(ctx, "token-2"); err != nil {
		return nil, err
	}
	if err := f.admin.CoreV1().Secrets(benchNS).Delete(ctx, "token-1", metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	counting.Store(true)
	time.Sleep(window)
	cancel()
	wg.Wait()
	out := map[string][2]int64{}
	for name, c := range counts {
		out[name] = [2]int64{c[0].Load(), c[1].Load()}
	}
	return out, nil
}

// percentile returns the nearest-rank percentile p (0-100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
