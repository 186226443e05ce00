//go:build unix

package proxy

import (
	"errors"
	"syscall"
)

// alive reports whether an idle connection is still open and holds nothing unread: the API
// server (or a load balancer before it) may have closed it, and a request written to it
// would be lost. It peeks at the socket without blocking, as net/http's Transport learns it
// from the read it keeps pending on every idle connection.
func (c *http1Conn) alive() bool {
	if c.br.Buffered() > 0 || c.under.r.Buffered() > 0 {
		return false
	}
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read yet: open. Bytes: something unasked for (a TLS alert before a
		// close). 0 bytes and no error: the other side closed it.
		open = n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK))
	})
	return err == nil && open
}
