// Command devtool holds the small servers the demo and the load comparison
// need beside okproxy: a sample upstream API and a bare
// httputil.ReverseProxy baseline with the same transport settings as
// okproxy, so the two can be measured against each other in one run.
// It is a development tool; it is not part of the product.
//
//	devtool upstream  --listen 127.0.0.1:9000
//	devtool bareproxy --listen 127.0.0.1:8081 --upstream http://127.0.0.1:9000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/okproxy/okproxy/internal/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devtool:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: devtool upstream|bareproxy [flags]")
	}
	fs := flag.NewFlagSet("devtool "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	upstream := fs.String("upstream", "", "upstream URL (bareproxy)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var h http.Handler
	switch args[0] {
	case "upstream":
		h = http.HandlerFunc(sample)
	case "bareproxy":
		u, err := url.Parse(*upstream)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--upstream: %q is not a URL", *upstream)
		}
		// The baseline: the same Rewrite-based ReverseProxy, transport and
		// buffer pool okproxy uses, with none of its checks. The load script
		// runs it with okproxy's GOGC too.
		h = &httputil.ReverseProxy{
			Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
			Transport:  proxy.NewTransport(proxy.TransportConfig{}),
			BufferPool: proxy.BufferPool(),
		}
	default:
		return fmt.Errorf("unknown command %q: upstream or bareproxy", args[0])
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
	fmt.Fprintf(stderr, "devtool %s listening on %s\n", args[0], *listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// sample is the demo's upstream API: it says who the proxy said called it.
func sample(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/bench" {
		w.Write([]byte("ok\n"))
		return
	}
	groups := []string{}
	if g := r.Header.Get("X-Okproxy-Groups"); g != "" {
		groups = strings.Split(g, ",")
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"upstream":   "sample-api",
		"method":     r.Method,
		"path":       r.URL.Path,
		"query":      r.URL.RawQuery,
		"user":       r.Header.Get("X-Okproxy-User"),
		"groups":     groups,
		"rule":       r.Header.Get("X-Okproxy-Rule"),
		"request_id": r.Header.Get("X-Request-Id"),
	})
}
