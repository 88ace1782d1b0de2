package dbtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Cut is a TCP forwarder between a test and PostgreSQL that the test can cut
// and restore, to simulate the database becoming unreachable without
// stopping the shared test cluster.
type Cut struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

// NewCut starts a forwarder to the host:port of dbURL and returns it with a
// URL that goes through it. It is closed when t ends.
func NewCut(t testing.TB, dbURL string) (*Cut, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cut{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	go c.serve()
	t.Cleanup(func() { ln.Close(); c.Down() })
	u.Host = ln.Addr().String()
	return c, u.String()
}

func (c *Cut) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			in.Close()
			continue
		}
		c.conns[in], c.conns[out] = struct{}{}, struct{}{}
		c.mu.Unlock()
		go func() { io.Copy(out, in); out.Close(); in.Close() }()
		go func() { io.Copy(in, out); in.Close(); out.Close() }()
	}
}

// Down drops every connection and refuses new ones.
func (c *Cut) Down() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for conn := range c.conns {
		conn.Close()
	}
	c.conns = map[net.Conn]struct{}{}
}

// Up accepts connections again.
func (c *Cut) Up() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}
