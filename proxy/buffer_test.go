package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestStreamsFlushEachWrite proves that what may stream is passed on write by write: the
// upstream writes the next event only once the client has received the previous one, so a
// proxy that held any of them back would never finish.
func TestStreamsFlushEachWrite(t *testing.T) {
	next := make(chan struct{})
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("ct"))
		for i := range 3 {
			fmt.Fprintf(w, `{"type":"MODIFIED","n":%d}`+"\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}), nil)
	for _, path := range []string{
		"/api/v1/pods?watch=true&ct=application/json",
		"/api/v1/namespaces/default/pods?watch=1&ct=application/json",
		"/api/v1/watch/namespaces/default/pods?ct=application/json",
		"/apis/apps/v1/watch/deployments?ct=application/json",
		"/apis/apps/v1/deployments?watch=true&ct=application/vnd.kubernetes.protobuf%3Bstream=watch",
		// The API server ignores an invalid parameter (here one with a semicolon), and so
		// must the proxy: this is a watch.
		"/api/v1/pods?labelSelector=a;b&watch=true&ct=application/json",
		"/api/v1/namespaces/default/pods/app/log?follow=true&ct=text/plain",
		"/api/v1/namespaces/default/pods/app/proxy/events?ct=text/plain",
		"/api/v1/namespaces/default/services/web:80/proxy/stream?ct=application/octet-stream",
		"/api/v1/nodes/node-1/proxy/logs/?ct=text/plain",
		"/api/v1/proxy/namespaces/default/pods/app/?ct=text/plain",
		// Not a stream by its request, but by its media type.
		"/apis/custom.example.com/v1/things?ct=text/event-stream",
	} {
		t.Run(path, func(t *testing.T) {
			// The first event arrives with the headers: Do blocks until then.
			lines := make(chan string, 1)
			var br *bufio.Reader
			go func() {
				resp, err := f.front.Client().Do(newRequest(t, http.MethodGet, f.front.URL+path, nil))
				if err != nil {
					lines <- err.Error()
					return
				}
				t.Cleanup(func() { resp.Body.Close() })
				br = bufio.NewReader(resp.Body)
				line, _ := br.ReadString('\n')
				lines <- line
			}()
			for i := range 3 {
				if i > 0 {
					go func() {
						line, _ := br.ReadString('\n')
						lines <- line
					}()
				}
				select {
				case line := <-lines:
					if want := fmt.Sprintf(`{"type":"MODIFIED","n":%d}`+"\n", i); line != want {
						t.Fatalf("event %d = %q, want %q", i, line, want)
					}
				case <-time.After(time.Second):
					t.Fatalf("event %d did not arrive within a second", i)
				}
				next <- struct{}{}
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
				t.Errorf("after the events: %q, %v", rest, err)
			}
		})
	}
}

// TestAnswerDeliveredWhole proves that ordinary answers, read ahead or not, arrive complete
// and unchanged whatever their size and however the upstream wrote them, with their trailers.
func TestAnswerDeliveredWhole(t *testing.T) {
	body := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a' + byte(i*7%26)
		}
		return b
	}
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("n"))
		chunk, _ := strconv.Atoi(q.Get("chunk"))
		if q.Get("trailer") == "announced" {
			w.Header().Set("Trailer", "X-Checksum")
		}
		w.Header().Set("Content-Type", "application/json")
		if q.Get("length") != "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		if q.Get("code") != "" {
			code, _ := strconv.Atoi(q.Get("code"))
			w.WriteHeader(code)
		}
		b := body(n)
		for len(b) > 0 {
			c := min(chunk, len(b))
			w.Write(b[:c])
			w.(http.Flusher).Flush() // as the API server's streaming list encoder may
			b = b[c:]
		}
		switch q.Get("trailer") {
		case "announced":
			w.Header().Set("X-Checksum", "42")
		case "unannounced":
			w.Header().Set(http.TrailerPrefix+"X-Checksum", "42")
		}
	}), nil)
	for _, tt := range []struct {
		query   string
		n       int
		whole   bool // sent with a Content-Length
		trailer bool
	}{
		{query: "n=0&chunk=1", n: 0, whole: true},
		{query: "n=100&chunk=7", n: 100, whole: true},
		{query: "n=21500&chunk=2100", n: 21500, whole: true},
		{query: "n=21500&chunk=2100&code=404", n: 21500, whole: true},
		{query: "n=21500&chunk=2100&length=1", n: 21500, whole: true},
		{query: "n=60000&chunk=16384", n: 60000, whole: true},
		{query: fmt.Sprintf("n=%d&chunk=10000", maxBufferedBody-1), n: maxBufferedBody - 1, whole: true},
		{query: fmt.Sprintf("n=%d&chunk=10000", maxBufferedBody), n: maxBufferedBody}, // EOF not seen
		{query: fmt.Sprintf("n=%d&chunk=10000", maxBufferedBody+1), n: maxBufferedBody + 1},
		{query: "n=1500000&chunk=30000", n: 1500000},
		{query: "n=21500&chunk=2100&trailer=announced", n: 21500, trailer: true},
		{query: "n=21500&chunk=2100&trailer=unannounced", n: 21500, trailer: true},
	} {
		t.Run(tt.query, func(t *testing.T) {
			resp, got := f.get("/api/v1/namespaces/default/pods?" + tt.query)
			if got != string(body(tt.n)) {
				t.Errorf("body of %d bytes, want %d bytes as sent", len(got), tt.n)
			}
			if tt.whole && resp.ContentLength != int64(tt.n) {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, tt.n)
			}
			if !tt.whole && resp.ContentLength != -1 {
				t.Errorf("Content-Length %d, want the answer streamed", resp.ContentLength)
			}
			if tt.trailer && resp.Trailer.Get("X-Checksum") != "42" {
				t.Errorf("trailers %v, want X-Checksum: 42", resp.Trailer)
			}
		})
	}

	t.Run("HEAD", func(t *testing.T) {
		resp, got := f.do(newRequest(t, http.MethodHead, f.front.URL+"/api/v1/namespaces/default/pods?n=100&chunk=10&length=1", nil))
		if resp.StatusCode != http.StatusOK || got != "" || resp.ContentLength != 100 {
			t.Errorf("HEAD: %d, Content-Length %d, body %q", resp.StatusCode, resp.ContentLength, got)
		}
	})
}

// TestAnswerCutShort proves that an answer the upstream breaks off is not passed on as a
// complete (shorter) one.
func TestAnswerCutShort(t *testing.T) {
	f := newFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(bytes.Repeat([]byte("x"), 5000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // resets the HTTP/2 stream
	}), nil)
	resp, err := f.front.Client().Do(newRequest(t, http.MethodGet, f.front.URL+"/api/v1/pods", nil))
	if err != nil {
		return // refused outright: fine too
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("read %d bytes and a clean end (Content-Length %d), want an error", len(b), resp.ContentLength)
	}
}
