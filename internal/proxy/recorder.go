package proxy

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// responseRecorder notes the status the upstream answered with. It exposes
// the underlying writer through Unwrap so http.ResponseController (which
// ReverseProxy uses to flush and to hijack for upgrades) still works.
type responseRecorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (r *responseRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *responseRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *responseRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *responseRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	c, rw, err := hj.Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, rw, err
}

func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
