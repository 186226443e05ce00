package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Ordinary answers (a list, a get, an update: anything that is not a watch, a followed log, an
// upgrade or a proxy subresource) shorter than maxBufferedBody are read whole from the API
// server before they are passed on, and sent with a Content-Length. The API server streams a list
// without a Content-Length, and httputil.ReverseProxy flushes every read of such a body: a
// write syscall per HTTP/2 DATA frame, a chunk header and a flush each, where one write is
// enough. Longer answers, and every streamed one, are passed on as they come, each read
// flushed at once.
//
// It is the size of the pooled buffers, so that reading ahead never allocates once the pool
// is warm, and a burst of large answers costs at most this much per request in flight: with
// 256 KiB, 64 concurrent 1 MiB answers held 16 MiB of read-ahead and left as much garbage
// again (hack/proxymem).
const maxBufferedBody = 64 << 10

// pooledBodyCap bounds the buffers kept for reuse, so that one large list does not pin its
// buffer in the pool.
const pooledBodyCap = maxBufferedBody

// mayStream reports whether a request that is not long-running may still be answered with a
// stream whose every write must reach the client at once: the proxy subresources (a pod's,
// service's or node's own HTTP answer, which may be server-sent events or anything else) and
// exec, attach and portforward.
func mayStream(urlPath string) bool {
	p := parseAPIPath(urlPath)
	if p.verb == "proxy" {
		return true
	}
	switch p.subresource {
	case "proxy", "exec", "attach", "portforward":
		return true
	}
	return false
}

// bufferable reports whether resp, the answer to an ordinary request, may be read whole
// before it is passed on: a body of unknown length, no announced trailer, and not a stream
// by its media type.
func bufferable(resp *http.Response) bool {
	if resp.ContentLength != -1 || len(resp.Trailer) > 0 || resp.Request.Method == http.MethodHead {
		return false
	}
	switch code := resp.StatusCode; {
	case code < 200, code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	ct := resp.Header["Content-Type"]
	// text/event-stream, or a ;stream=watch media type (a protobuf watch).
	return len(ct) == 0 || !strings.Contains(ct[0], "event-stream") && !strings.Contains(ct[0], "stream=")
}

// bufferResponse reads resp's body, up to maxBufferedBody, and replaces it with the bytes
// read followed by whatever is left. When the whole body was read it sets the
// Content-Length, so that httputil.ReverseProxy neither flushes nor chunks it.
func bufferResponse(resp *http.Response) {
	bp := bodyBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	var err error
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBufferedBody {
				break
			}
			nb := make([]byte, len(buf), min(2*cap(buf), maxBufferedBody))
			copy(nb, buf)
			buf = nb
		}
		var n int
		n, err = resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	b := &bufferedBody{data: buf, pool: bp, rest: resp.Body}
	switch {
	case err == io.EOF && len(resp.Trailer) == 0:
		// Complete. An HTTP/2 answer's trailers, if it had any it did not announce, are
		// known now; they need a chunked answer, so then the Content-Length is not set.
		resp.ContentLength = int64(len(buf))
		resp.Header["Content-Length"] = []string{strconv.Itoa(len(buf))}
		b.err = io.EOF
	case err != nil:
		b.err = err // passed on after the bytes read, as the original body would
	}
	resp.Body = b
}

// bodyBuffers holds the buffers of bufferResponse.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// bufferedBody is a body read (in part or whole) ahead: data, then err if set, else rest.
type bufferedBody struct {
	data []byte
	off  int
	err  error
	rest io.ReadCloser // the original body, closed by Close
	pool *[]byte       // returned to bodyBuffers by Close
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	if b.off < len(b.data) {
		n := copy(p, b.data[b.off:])
		b.off += n
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.rest.Read(p)
}

func (b *bufferedBody) Close() error {
	if b.pool != nil {
		if cap(b.data) <= pooledBodyCap {
			*b.pool = b.data[:0]
			bodyBuffers.Put(b.pool)
		}
		b.pool, b.data, b.off = nil, nil, 0
	}
	return b.rest.Close()
}
