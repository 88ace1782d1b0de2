package proxy

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/okproxy/okproxy/internal/policy"
)

// net/http refuses some requests before any handler runs: a malformed
// request line or target (`/%zz`), a bad header, headers over
// MaxHeaderBytes (431), a transfer coding it does not implement (501), an
// HTTP version it does not speak (505). It writes a plain-text answer
// straight to the connection and closes it, so the handler never sees the
// request and could not audit it; the same goes for an Expect header it does
// not support (417). WatchListener and ConnState close that gap on a
// plain-TCP listener: a connection is busy from a handler's start until
// net/http marks it idle, and an error answer written while it is not busy
// is net/http's own, recorded as a bad_request audit event with the request
// line read since the connection went idle.
//
// Under TLS the listener cannot be wrapped without taking the *tls.Conn
// from net/http (and with it HTTP/2), so there such refusals stay unaudited
// (docs/security.md).

// WatchListener wraps a plain-TCP listener for serve (see above).
func (h *Handler) WatchListener(ln net.Listener) net.Listener {
	return &watchListener{Listener: ln, h: h}
}

type watchListener struct {
	net.Listener
	h *Handler
}

func (l *watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchConn{Conn: c, h: l.h}, nil
}

// maxHead bounds the request bytes a connection keeps for the audit event
// of an early refusal, held inline so that no request allocates for it:
// enough for the request line of all but very long targets.
const maxHead = 512

type watchConn struct {
	net.Conn
	h *Handler
	// busy runs from a handler's start until net/http marks the connection
	// idle again. Not until the handler returns: net/http still flushes the
	// end of the response and discards an unread request body after that.
	// Whatever is written while the connection is not busy is net/http's
	// own answer.
	busy atomic.Bool

	mu         sync.Mutex
	head       [maxHead]byte // the next request's first bytes, read since the connection went idle
	n          int
	pending    byte // the byte net/http's background read took while busy
	hasPending bool
}

// CloseWrite passes a half-close through, which net/http uses to let a
// client read an error answer before the connection is reset.
func (c *watchConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// enter marks the start of a handler.
func (c *watchConn) enter() {
	c.busy.Store(true)
	c.mu.Lock()
	c.n, c.hasPending = 0, false
	c.mu.Unlock()
}

// idle is net/http's StateIdle: the last response is complete and the next
// request has not been read (save the one byte a background read took).
func (c *watchConn) idle() {
	c.mu.Lock()
	c.n = 0
	if c.hasPending {
		c.head[0], c.n, c.hasPending = c.pending, 1, false
	}
	c.mu.Unlock()
	c.busy.Store(false)
}

func (c *watchConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	switch {
	case n == 0:
	case !c.busy.Load():
		c.mu.Lock()
		c.n += copy(c.head[c.n:], p[:n])
		c.mu.Unlock()
	case len(p) == 1:
		// While busy, reads are the request body or the tail of one being
		// discarded (nothing to keep), except net/http's one-byte
		// background read that notices the next request: that byte starts it.
		c.mu.Lock()
		c.pending, c.hasPending = p[0], true
		c.mu.Unlock()
	}
	return n, err
}

func (c *watchConn) Write(p []byte) (int, error) {
	if !c.busy.Load() {
		if status, detail, ok := parserAnswer(p); ok {
			c.mu.Lock()
			head := bytes.Clone(c.head[:c.n])
			c.mu.Unlock()
			c.h.auditEarlyError(c, head, status, detail)
		}
	}
	return c.Conn.Write(p)
}

// ConnState is for http.Server.ConnState with WatchListener: it tells each
// watched connection when net/http is done with a request.
func ConnState(c net.Conn, s http.ConnState) {
	if wc, ok := c.(*watchConn); ok && s == http.StateIdle {
		wc.idle()
	}
}

// earlyErrorHeaders is what net/http writes between the status line and the
// body of the answers it makes without a handler for a malformed request.
const earlyErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// parserAnswer reads the status of a refusal net/http writes itself (while
// no handler has the connection): a malformed request (400, 431, 501, 505)
// or an Expect it does not support (417); detail is what follows
// "NNN Status Text: " on the status line of the former, if anything.
func parserAnswer(p []byte) (status int, detail string, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !found || len(rest) < 4 || rest[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	if i := bytes.Index(rest, []byte(earlyErrorHeaders)); i > 4 && bytes.IndexByte(rest[:i], '\n') < 0 {
		if _, d, found := strings.Cut(string(rest[4:i]), ": "); found {
			detail = d
		}
	}
	return status, detail, true
}

// auditEarlyError records a request net/http refused before the handler:
// reason bad_request, the status net/http answered, the peer's address (no
// header was believed), and the method and target when the request line
// could be read.
func (h *Handler) auditEarlyError(c net.Conn, head []byte, status int, detail string) {
	st := &reqState{start: h.cfg.Now(), id: requestID("")}
	r := &http.Request{RemoteAddr: c.RemoteAddr().String(), Header: http.Header{}}
	st.clientIP = h.clientIP(r) // the peer: no header was parsed, so none is believed
	method, target := requestLine(head)
	r.Method = method
	st.path = targetForLog(target) // a query string is never stored, and may hold a token
	st.detail = "refused by the HTTP parser before any rule ran: " + strconv.Itoa(status) + " " + http.StatusText(status)
	if detail != "" {
		st.detail += ": " + detail
	}
	ev := h.event(r, st, status, policy.ReasonBadRequest)
	if err := h.cfg.Audit.Record(ev); err != nil {
		// The answer is already net/http's; all that can be done is say so.
		h.cfg.Metrics.auditRefused.Inc()
		h.cfg.Logger.Error("audit unavailable for a request the HTTP parser refused", "request_id", st.id, "client_ip", st.clientIP, "err", err)
	}
	h.log(st, policy.ReasonBadRequest, r)
	h.observe(st, status, policy.ReasonBadRequest)
}

// requestLine reads "METHOD TARGET HTTP/x.y" off the start of head; both are
// empty when it does not look like a request line.
func requestLine(head []byte) (method, target string) {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	parts := bytes.Split(line, []byte(" "))
	if len(parts) != 3 || !bytes.HasPrefix(parts[2], []byte("HTTP/")) {
		return "", ""
	}
	for _, c := range parts[0] {
		if c < '!' || c > '~' || len(parts[0]) > 32 {
			return "", ""
		}
	}
	return string(parts[0]), string(parts[1])
}
