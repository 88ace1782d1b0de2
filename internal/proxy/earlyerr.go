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
// request and could not audit it. WatchListener closes that gap on a
// plain-TCP listener: each connection notes the bytes read since its last
// handler ended, and a write that is exactly net/http's early-error answer,
// made while no handler runs, is recorded as a bad_request audit event.
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
// of an early refusal: enough for a request line.
const maxHead = 2048

type watchConn struct {
	net.Conn
	h         *Handler
	inHandler atomic.Int32

	mu   sync.Mutex
	head []byte // what was read since the last handler started, up to maxHead
}

// enter and leave bracket a handler: its writes are never early errors, and
// the bytes of the next request start after it.
func (c *watchConn) enter() {
	c.inHandler.Add(1)
	c.mu.Lock()
	c.head = c.head[:0]
	c.mu.Unlock()
}

func (c *watchConn) leave() { c.inHandler.Add(-1) }

func (c *watchConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// While a handler runs, the reads are its request body, except the
	// one-byte read net/http makes in the background to notice the next
	// request (or the client leaving): that byte starts the next request.
	if n > 0 && (c.inHandler.Load() == 0 || len(p) == 1) {
		c.mu.Lock()
		if room := maxHead - len(c.head); room > 0 {
			c.head = append(c.head, p[:min(n, room)]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *watchConn) Write(p []byte) (int, error) {
	if c.inHandler.Load() == 0 {
		if status, detail, ok := earlyError(p); ok {
			c.mu.Lock()
			head := bytes.Clone(c.head)
			c.mu.Unlock()
			c.h.auditEarlyError(c, head, status, detail)
		}
	}
	return c.Conn.Write(p)
}

// earlyErrorHeaders is what net/http writes between the status line and the
// body of an answer it makes without a handler. A handler's response always
// carries Date (and a length or chunking), so it never looks like this.
const earlyErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// earlyError recognises net/http's early-error answer: its status and the
// detail after "NNN Status Text: ", if any.
func earlyError(p []byte) (status int, detail string, ok bool) {
	rest, found := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !found {
		return 0, "", false
	}
	i := bytes.Index(rest, []byte(earlyErrorHeaders))
	if i < 4 || bytes.IndexByte(rest[:i], '\n') >= 0 || rest[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	if _, d, found := strings.Cut(string(rest[4:i]), ": "); found {
		detail = d
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
	st.path = safeLogPath(target)
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
	h.cfg.Metrics.observe(decisionOf(policy.ReasonBadRequest), string(policy.ReasonBadRequest), "", 0)
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
