//go:build !unix

package proxy

// alive reports whether an idle connection holds nothing unread; without a way to peek at
// the socket, a connection the other side closed is found when a request is sent on it.
func (c *http1Conn) alive() bool {
	return c.br.Buffered() == 0 && c.under.r.Buffered() == 0
}
