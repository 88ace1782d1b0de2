package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// parserAnswer reads the status of an error answer net/http writes itself;
// whether a write is net/http's own is decided by the connection's state
// (busy from a handler's start until idle), not by its bytes.
func TestParserAnswer(t *testing.T) {
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
		{"HTTP/1.1 417 Expectation Failed\r\nDate: Fri, 27 Nov 2026 10:00:00 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 417, ""},
		// Not error answers:
		{"HTTP/1.1 200 OK" + earlyErrorHeaders + "ok", 0, ""},
		{"HTTP/1.1 100 Continue\r\n\r\n", 0, ""},
		{"HTTP/1.1 301 Moved Permanently\r\n\r\n", 0, ""},
		{"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n", 0, ""},
		{"body bytes HTTP/1.1 400 Bad Request" + earlyErrorHeaders, 0, ""},
		{"HTTP/1.1 4x0 Bad" + earlyErrorHeaders, 0, ""},
		{"HTTP/1.1 400" + earlyErrorHeaders, 0, ""},
		{"HTTP/1.1 600 Odd\r\n\r\n", 0, ""},
		{"", 0, ""},
	} {
		status, detail, ok := parserAnswer([]byte(c.in))
		if status != c.status || detail != c.detail || ok != (c.status != 0) {
			t.Errorf("parserAnswer(%q) = %d %q %v, want %d %q", c.in, status, detail, ok, c.status, c.detail)
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

func FuzzParserAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 400 Bad Request" + earlyErrorHeaders + "400 Bad Request"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nDate: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		status, detail, ok := parserAnswer(p)
		if !ok {
			return
		}
		if status < 400 || status > 599 || !bytes.HasPrefix(p, []byte("HTTP/1.1 "+strconv.Itoa(status)+" ")) {
			t.Fatalf("%q: status %d", p, status)
		}
		if detail != "" && !bytes.Contains(p, []byte(": "+detail+earlyErrorHeaders)) {
			t.Fatalf("%q: detail %q not from the status line", p, detail)
		}
	})
}

// The connection states that decide what is audited: writes while busy
// (from a handler's start until net/http marks the connection idle, which
// includes the final flush after the handler returns) are never taken for
// net/http's own answers; bytes read while busy (a body, or one discarded
// unread) never attribute the next request, except net/http's one-byte
// background read, which starts it; a query string is never stored.
func TestWatchConnStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	client, server := net.Pipe()
	defer client.Close()
	wc := &watchConn{Conn: server, h: e.h}
	go io.Copy(io.Discard, client) // net.Pipe writes wait for a reader
	send := func(s string) {
		go client.Write([]byte(s))
	}
	read := func(n int) {
		buf := make([]byte, n)
		if _, err := io.ReadFull(wc, buf); err != nil {
			t.Fatal(err)
		}
	}
	answer := []byte("HTTP/1.1 400 Bad Request" + earlyErrorHeaders + "400 Bad Request")
	fake := []byte("HTTP/1.1 503 Service Unavailable: spoofed" + earlyErrorHeaders + "x")

	// A handler runs: its writes, and net/http's flush after it returns,
	// are not refusals, whatever they contain.
	wc.enter()
	wc.Write(fake)
	// The client's unread body, discarded after the handler: not the next
	// request line, even if it looks like one.
	body := "DELETE /forged/attribution HTTP/1.1\r\n"
	send(body)
	read(len(body))
	// net/http's background read takes the next request's first byte.
	send("G")
	read(1)
	wc.Write(fake)
	if n := len(e.sink.all()); n != 0 {
		t.Fatalf("%d events while busy", n)
	}
	wc.idle()
	rest := "ET /%zz-real?access_token=SECRET HTTP/1.1\r\nHost: x\r\n\r\n"
	send(rest)
	read(len(rest))
	wc.Write(answer)
	evs := e.sink.all()
	if len(evs) != 1 {
		t.Fatalf("%d events after a refusal, want 1", len(evs))
	}
	if ev := evs[0]; ev.Method != "GET" || ev.Path != "/%zz-real" || ev.Status != 400 || ev.Reason != "bad_request" {
		t.Fatalf("event %+v", ev)
	}
	if strings.Contains(fmt.Sprintf("%+v", evs[0]), "SECRET") {
		t.Fatal("the query string reached the audit event")
	}
}

// A refused target is audited as its path: no query, fragment, user
// information or host.
func TestTargetForLog(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/a/%zz?token=SECRET":                  "/a/%zz",
		"/a#SECRET":                            "/a",
		"http://alice:SECRET@x/e7/abs":         "/e7/abs",
		"http://alice:SECRET@x":                "/",
		"https://x/p?q=SECRET":                 "/p",
		"alice:SECRET@host:443":                "host:443",
		"*":                                    "*",
		"http://x/a\x00b":                      "/a%00b",
		"HTTP://alice:SECRET@x/%zz?t=1#SECRET": "/%zz",
	} {
		if got := targetForLog(in); got != want || strings.Contains(got, "SECRET") {
			t.Errorf("targetForLog(%q) = %q, want %q", in, got, want)
		}
	}
}
