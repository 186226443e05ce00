package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTraces(t *testing.T) {
	const traces = `File: api-proxy-profiled
Type: cpu
Duration: 88.66s, Total samples = 3.96s ( 4.47%)
-----------+-------------------------------------------------------
      10ms   crypto/internal/fips140/aes/gcm.gcmAesDec
             crypto/tls.(*halfConn).decrypt
             crypto/tls.(*Conn).Read
             net/http.(*conn).serve
-----------+-------------------------------------------------------
      20ms   internal/runtime/syscall/linux.Syscall6
             syscall.write
             internal/poll.(*FD).Write
             net.(*conn).Write
             crypto/tls.(*Conn).Write
-----------+-------------------------------------------------------
      1.01s   runtime.futex
             runtime.futexwakeup
             runtime.wakep
-----------+-------------------------------------------------------
      30ms   net/textproto.CanonicalMIMEHeaderKey
             net/http.ReadResponse
             github.com/api-access-injector/api-access-injector/proxy.(*http1Pool).send
-----------+-------------------------------------------------------
      10ms   strings.(*byteReplacer).Replace
             github.com/api-access-injector/api-access-injector/proxy.cleanPath
             net/http.(*conn).serve
-----------+-------------------------------------------------------
      10ms   runtime.memmove
             bytes.(*Buffer).ReadFrom
-----------+-------------------------------------------------------
`
	got, err := parseTraces(strings.NewReader(traces))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"TLS encryption":                      10 * time.Millisecond,
		"write syscalls":                      20 * time.Millisecond,
		"threads sleeping and waking (futex)": 1010 * time.Millisecond,
		"HTTP: parsing, headers, framing":     30 * time.Millisecond,
		"the proxy's own code":                10 * time.Millisecond,
		"copying memory":                      10 * time.Millisecond,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CPU by category (-want +got):\n%s", diff)
	}
	if _, err := parseTraces(strings.NewReader("-----------+---\n  ten runtime.futex\n")); err == nil {
		t.Error("a trace whose value is not a duration was accepted")
	}
}
