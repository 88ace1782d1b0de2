package proxy

import (
	"bytes"
	"testing"
)

// earlyError must recognise exactly net/http's handler-less answers and
// nothing a handler can write (a handler's response always has Date).
func TestEarlyError(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in     string
		status int
		detail string
	}{
		{"HTTP/1.1 400 Bad Request" + earlyErrorHeaders + "400 Bad Request", 400, ""},
		{"HTTP/1.1 431 Request Header Fields Too Large" + earlyErrorHeaders + "431 Request Header Fields Too Large", 431, ""},
		{"HTTP/1.1 501 Not Implemented" + earlyErrorHeaders + "Unsupported transfer encoding", 501, ""},
		{"HTTP/1.1 400 Bad Request: malformed Host header" + earlyErrorHeaders + "400 Bad Request: malformed Host header", 400, "malformed Host header"},
		{"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version" + earlyErrorHeaders + "x", 505, "unsupported protocol version"},
		// Not early errors:
		{"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Fri, 27 Nov 2026 10:00:00 GMT\r\nConnection: close\r\n\r\nx", 0, ""},
		{"HTTP/1.1 400 Bad Request\r\nDate: x" + earlyErrorHeaders + "x", 0, ""},
		{"HTTP/1.1 200 OK" + earlyErrorHeaders + "ok", 0, ""},
		{"HTTP/1.1 100 Continue\r\n\r\n", 0, ""},
		{"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n", 0, ""},
		{"body bytes HTTP/1.1 400 Bad Request" + earlyErrorHeaders, 0, ""},
		{"HTTP/1.1 4x0 Bad" + earlyErrorHeaders, 0, ""},
		{"HTTP/1.1 400" + earlyErrorHeaders, 0, ""},
		{"", 0, ""},
	} {
		status, detail, ok := earlyError([]byte(c.in))
		if status != c.status || detail != c.detail || ok != (c.status != 0) {
			t.Errorf("earlyError(%q) = %d %q %v, want %d %q", c.in, status, detail, ok, c.status, c.detail)
		}
	}
}

func TestRequestLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, method, target string }{
		{"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/%zz"},
		{"POST /a?b=%zz HTTP/1.1\n", "POST", "/a?b=%zz"},
		{"GET /a b HTTP/1.1\r\n", "", ""},
		{"GARBAGE\r\n", "", ""},
		{"G\x00T / HTTP/1.1\r\n", "", ""},
		{"GET / FTP/1.0\r\n", "", ""},
		{"", "", ""},
	} {
		m, tg := requestLine([]byte(c.in))
		if m != c.method || tg != c.target {
			t.Errorf("requestLine(%q) = %q %q, want %q %q", c.in, m, tg, c.method, c.target)
		}
	}
}

func FuzzEarlyError(f *testing.F) {
	f.Add([]byte("HTTP/1.1 400 Bad Request" + earlyErrorHeaders + "400 Bad Request"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nDate: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		status, _, ok := earlyError(p)
		if ok && (status < 400 || status > 599) {
			t.Fatalf("status %d", status)
		}
		// A response with a Date header line before the blank line is a
		// handler's, never an early error.
		if ok && len(p) > 0 {
			if i := indexHeaderEnd(p); i >= 0 && containsDate(p[:i]) {
				t.Fatalf("a response with Date was taken for an early error: %q", p)
			}
		}
	})
}

func indexHeaderEnd(p []byte) int { return bytes.Index(p, []byte("\r\n\r\n")) }

func containsDate(h []byte) bool { return bytes.Contains(bytes.ToLower(h), []byte("\r\ndate:")) }
