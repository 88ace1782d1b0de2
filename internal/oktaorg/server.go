package oktaorg

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Operation names used by the request counters and fault injection; they
// are Okta's operationIds.
const (
	OpListGroups     = "listGroups"
	OpGetGroup       = "getGroup"
	OpListGroupUsers = "listGroupUsers"
	OpListGroupRules = "listGroupRules"
	OpListUsers      = "listUsers"
	OpGetUser        = "getUser"
	OpToken          = "token"
)

// Config configures a Server. Only Org is required.
type Config struct {
	// Org is the data served.
	Org *Org
	// APIToken is the SSWS token accepted; empty accepts no SSWS token.
	APIToken string
	// ClientID and ClientKey enable the OAuth service-app mode: POST
	// /oauth2/v1/token accepts a private_key_jwt client assertion from
	// ClientID signed with ClientKey's private half, and issues Bearer
	// tokens for the scopes asked for.
	ClientID  string
	ClientKey *rsa.PublicKey
	// Now is the server's clock (Date header, rate-limit windows, token
	// expiry); default time.Now. Give tests a *Clock's Now so waiting out a
	// rate limit is advancing the clock, not sleeping.
	Now func() time.Time
	// RateLimit is the per-minute request budget shared by all endpoints
	// (Okta's budgets are per endpoint; one budget is enough to exercise a
	// client); 0 means unlimited (headers still sent).
	RateLimit int
	// CommaJoinedLinks sends the self and next links in one comma-joined
	// Link header, the form that makes okta-sdk-golang v2 loop on the self
	// link, instead of Okta's separate headers.
	CommaJoinedLinks bool
	// Addr is the loopback address NewServer listens on; default
	// 127.0.0.1:0.
	Addr string
}

// Fault makes matching requests fail.
type Fault struct {
	// Op limits the fault to one operation (Op* constants); empty: all.
	Op string
	// After lets this many matching requests through first.
	After int
	// Count is how many matching requests then fail; 0 means all of them.
	Count int
	// Status is the HTTP status to answer (default 500).
	Status int
}

type fault struct {
	Fault
	seen, failed int
}

// Server serves an Org as the Okta Management API. It is an http.Handler;
// NewServer also listens on loopback.
type Server struct {
	cfg Config
	mux *http.ServeMux

	mu         sync.Mutex
	counts     map[string]int64
	window     time.Time // start of the current rate-limit minute
	used       int       // requests in window
	throttle   int       // next requests answered 429 regardless of budget
	faults     []*fault
	tokens     map[string]accessToken // Bearer token → grant
	usedJTI    map[string]bool
	ln         net.Listener
	srv        *http.Server
	url        string
	reqCounter int64
}

type accessToken struct {
	scopes  map[string]bool
	expires time.Time
}

// NewHandler returns the fake API as a handler (for httptest.Server).
func NewHandler(cfg Config) *Server {
	if cfg.Org == nil {
		cfg.Org = NewOrg(cfg.Now)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), counts: map[string]int64{},
		tokens: map[string]accessToken{}, usedJTI: map[string]bool{}}
	s.route("GET /api/v1/groups", OpListGroups, "okta.groups.read", s.listGroups)
	s.route("GET /api/v1/groups/rules", OpListGroupRules, "okta.groups.read", s.listGroupRules)
	s.route("GET /api/v1/groups/{id}", OpGetGroup, "okta.groups.read", s.getGroup)
	s.route("GET /api/v1/groups/{id}/users", OpListGroupUsers, "okta.groups.read", s.listGroupUsers)
	s.route("GET /api/v1/users", OpListUsers, "okta.users.read", s.listUsers)
	s.route("GET /api/v1/users/{id}", OpGetUser, "okta.users.read", s.getUser)
	s.mux.HandleFunc("POST /oauth2/v1/token", s.token)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, http.StatusNotFound, "E0000022", "The endpoint does not support the provided HTTP method")
	})
	return s
}

// NewServer starts the fake API on a loopback address. Close it when done.
func NewServer(cfg Config) (*Server, error) {
	addr := cmp.Or(cfg.Addr, "127.0.0.1:0")
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	s := NewHandler(cfg)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// CheckLoopback refuses addresses that are not on a loopback interface: the
// fake hands out data and tokens to anyone who asks.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address", addr)
	}
	return nil
}

// URL is the org URL (http://127.0.0.1:PORT) when started by NewServer.
func (s *Server) URL() string { return s.url }

// Org returns the served org, for mutators.
func (s *Server) Org() *Org { return s.cfg.Org }

// Close stops a server started by NewServer.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now().UTC()
	// Okta's Date is what clients pair with X-Rate-Limit-Reset; it must come
	// from the same (possibly fake) clock.
	w.Header().Set("Date", now.Format(http.TimeFormat))
	s.mu.Lock()
	s.reqCounter++
	w.Header().Set("X-Okta-Request-Id", fmt.Sprintf("fake-%d", s.reqCounter))
	s.mu.Unlock()
	s.mux.ServeHTTP(w, r)
}

// Count returns how many requests an operation received (Op* constants).
func (s *Server) Count(op string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[op]
}

// Counts returns a copy of all request counters.
func (s *Server) Counts() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// Total is the number of API requests received, over all operations.
func (s *Server) Total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, v := range s.counts {
		n += v
	}
	return n
}

// ResetCounts zeroes the request counters.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[string]int64{}
}

// InjectFault adds a fault; faults apply in the order added.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	s.faults = append(s.faults, &fault{Fault: f})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Throttle answers the next n API requests with 429, whatever the budget,
// resetting at the end of the current minute: a rate-limit storm.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

type handler func(w http.ResponseWriter, r *http.Request) error

// route wraps an API handler with counting, authentication, rate limiting
// and fault injection, in Okta's order: a request over budget is refused
// before it is looked at.
func (s *Server) route(pattern, op, scope string, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.counts[op]++
		s.mu.Unlock()
		if !s.limit(w) {
			s.writeError(w, http.StatusTooManyRequests, "E0000047", "API call exceeded rate limit due to too many requests.")
			return
		}
		if code, status, msg := s.authorize(r, scope); code != "" {
			s.writeError(w, status, code, msg)
			return
		}
		if status := s.fault(op); status != 0 {
			s.writeError(w, status, "E0000009", "Internal Server Error")
			return
		}
		if err := h(w, r); err != nil {
			var ae *apiError
			if errors.As(err, &ae) {
				s.writeError(w, ae.status, ae.code, ae.summary)
				return
			}
			s.writeError(w, http.StatusInternalServerError, "E0000009", "Internal Server Error")
		}
	})
}

// limit accounts the request against the per-minute budget, sets the
// X-Rate-Limit-* headers, and reports whether it may proceed.
func (s *Server) limit(w http.ResponseWriter) bool {
	now := s.cfg.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if win := now.Truncate(time.Minute); !win.Equal(s.window) {
		s.window, s.used = win, 0
	}
	limit := s.cfg.RateLimit
	if limit <= 0 {
		limit = 1 << 30
	}
	reset := s.window.Add(time.Minute).Unix()
	ok := true
	if s.throttle > 0 {
		s.throttle--
		ok = false
	} else if s.used >= limit {
		ok = false
	} else {
		s.used++
	}
	h := w.Header()
	h.Set("X-Rate-Limit-Limit", strconv.Itoa(limit))
	h.Set("X-Rate-Limit-Remaining", strconv.Itoa(max(limit-s.used, 0)))
	h.Set("X-Rate-Limit-Reset", strconv.FormatInt(reset, 10))
	return ok
}

func (s *Server) fault(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Op != "" && f.Op != op {
			continue
		}
		f.seen++
		if f.seen <= f.After {
			continue
		}
		if f.Count == 0 || f.failed < f.Count {
			f.failed++
			return f.Status
		}
	}
	return 0
}

// authorize checks the Authorization header: an SSWS API token, or a Bearer
// token issued by the token endpoint with the scope the operation needs.
func (s *Server) authorize(r *http.Request, scope string) (code string, status int, msg string) {
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "SSWS "):
		tok := strings.TrimPrefix(h, "SSWS ")
		if s.cfg.APIToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.APIToken)) == 1 {
			return "", 0, ""
		}
	case strings.HasPrefix(h, "Bearer "):
		tok := strings.TrimPrefix(h, "Bearer ")
		s.mu.Lock()
		at, ok := s.tokens[tok]
		s.mu.Unlock()
		if ok && s.cfg.Now().Before(at.expires) {
			if !at.scopes[scope] {
				return "E0000006", http.StatusForbidden, "You do not have permission to perform the requested action"
			}
			return "", 0, ""
		}
	}
	return "E0000011", http.StatusUnauthorized, "Invalid token provided"
}

type apiError struct {
	status        int
	code, summary string
}

func (e *apiError) Error() string { return e.summary }

func notFound(what string) error {
	return &apiError{http.StatusNotFound, "E0000007", "Not found: Resource not found: " + what}
}

func badSearch(err error) error {
	return &apiError{http.StatusBadRequest, "E0000031", "Invalid search criteria. " + err.Error()}
}

// writeError writes Okta's error body.
func (s *Server) writeError(w http.ResponseWriter, status int, code, summary string) {
	var id [10]byte
	rand.Read(id[:])
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"errorCode":    code,
		"errorSummary": summary,
		"errorLink":    code,
		"errorId":      "oae" + hex.EncodeToString(id[:]),
		"errorCauses":  []any{},
	})
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
