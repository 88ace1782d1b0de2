// Package proxy is okproxy's request path: an http.Handler that, in this
// order, assigns a request id, refuses hostile paths and strips spoofable
// headers, verifies the bearer token, resolves the caller's groups, decides
// with the current policy snapshot, applies quotas, reserves an audit slot,
// and forwards the request with httputil.ReverseProxy. Every answered request
// produces exactly one audit event and one metrics observation.
//
// The stages live in ServeHTTP in that order on purpose: it is the one place
// a reviewer reads to know what runs before what.
package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/okproxy/okproxy/internal/audit"
	"github.com/okproxy/okproxy/internal/authn"
	"github.com/okproxy/okproxy/internal/directory"
	"github.com/okproxy/okproxy/internal/policy"
	"github.com/okproxy/okproxy/internal/snapshot"
)

// GroupsSource says where a caller's groups come from (SPEC §4).
type GroupsSource string

const (
	// GroupsAuto: the token's claim, except when it is missing or holds
	// OktaGroupsCap entries, then the synced directory.
	GroupsAuto GroupsSource = "auto"
	// GroupsToken: the token's claim only.
	GroupsToken GroupsSource = "token"
	// GroupsDirectory: the synced directory only (by uid, then sub as login).
	GroupsDirectory GroupsSource = "directory"
	// GroupsUnion: both.
	GroupsUnion GroupsSource = "union"
)

// OktaGroupsCap is the number of groups beyond which Okta truncates or
// refuses the groups claim: a claim that holds exactly this many may be
// incomplete.
const OktaGroupsCap = 100

// Verifier verifies bearer tokens (internal/authn).
type Verifier interface {
	Verify(ctx context.Context, raw string) (*authn.Identity, error)
}

// HeaderVerifier is a Verifier that also parses the Authorization header
// itself (authn.Verifier): BearerTokenFromHeader followed by Verify, with a
// per-connection memo (see ConnContext).
type HeaderVerifier interface {
	VerifyHeader(ctx context.Context, h http.Header, memo *authn.HeaderMemo) (*authn.Identity, bool, error)
}

// Snapshots gives the policy snapshot in force (internal/snapshot).
type Snapshots interface {
	Current() *snapshot.Snapshot
}

// Config configures the handler. Zero values get the defaults in New.
type Config struct {
	// Upstream is where allowed requests go.
	Upstream *url.URL
	// Transport carries requests upstream (default: NewTransport(TransportConfig{})).
	Transport http.RoundTripper
	Verifier  Verifier
	Snapshots Snapshots
	// Audit receives one event per answered request.
	Audit audit.Sink
	// Quota, when set, limits callers after authorisation.
	Quota Limiter
	// GroupsSource selects where groups come from (default auto).
	GroupsSource GroupsSource
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Replica names this process in audit events.
	Replica string
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler is the proxy.
type Handler struct {
	cfg Config
	hv  HeaderVerifier // cfg.Verifier when it reads headers itself, else nil
	rp  *httputil.ReverseProxy
}

// New builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Upstream == nil || cfg.Upstream.Host == "" {
		return nil, errors.New("proxy: upstream URL required")
	}
	if cfg.Verifier == nil || cfg.Snapshots == nil || cfg.Audit == nil {
		return nil, errors.New("proxy: verifier, snapshots and audit are required")
	}
	if cfg.GroupsSource == "" {
		cfg.GroupsSource = GroupsAuto
	}
	switch cfg.GroupsSource {
	case GroupsAuto, GroupsToken, GroupsDirectory, GroupsUnion:
	default:
		return nil, errors.New("proxy: groups source must be auto, token, directory or union")
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport(TransportConfig{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg}
	h.hv, _ = cfg.Verifier.(HeaderVerifier)
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      cfg.Transport,
		ErrorHandler:   h.upstreamError,
		ModifyResponse: h.modifyResponse,
		// FlushInterval stays 0: ReverseProxy then flushes at once for responses
		// of unknown length and for text/event-stream, so streams stream, while
		// sized responses are not flushed write by write (-1 cost a third of
		// serve's CPU under load).
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		// Without a pool ReverseProxy allocates a 32 KiB copy buffer per request.
		BufferPool: &bufferPool,
	}
	return h, nil
}

// reqState travels with a request through the stages and into the audit event.
type reqState struct {
	start    time.Time
	id       string
	host     string // normalised Host header
	clientIP string
	path     string // canonical, decoded
	ident    *authn.Identity
	groups   []policy.GroupRef
	snap     *snapshot.Snapshot
	decision policy.Decision
	reason   policy.Reason
	detail   string // log-only detail of a refusal
	quota    *QuotaDecision
	upstream policy.Reason // set by the error handler
	body     *clientBody   // the request body as forwarded, nil without one
	// groupNames are the audit groups; groupsHeader the X-Okproxy-Groups value.
	groupNames   []string
	groupsHeader string
}

// callerMemo is what a request derives from a verified identity and the
// directory in force. It is kept on the cached identity and rebuilt when the
// directory version changes, so a token's second request does no group work.
type callerMemo struct {
	dirVersion int64
	groups     []policy.GroupRef
	names      []string
	header     string
	user       *directory.User
	caller     *policy.Caller
}

func (h *Handler) callerFor(id *authn.Identity, dir *directory.Directory) *callerMemo {
	var dv int64 = -1
	if dir != nil {
		dv = dir.Version
	}
	if m, ok := id.Memo().(*callerMemo); ok && m.dirVersion == dv {
		return m
	}
	m := &callerMemo{dirVersion: dv}
	m.groups, m.user = ResolveGroups(h.cfg.GroupsSource, id, dir)
	m.names, m.header = groupNames(m.groups)
	m.caller = policy.NewCaller(id.Subject, m.groups, id.Scopes)
	id.SetMemo(m)
	return m
}

type stateKey struct{}

// ServeHTTP runs the stages in order. Every return path answers exactly once
// and records exactly one audit event.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, _ := r.Context().Value(connKey{}).(*connInfo)
	if conn != nil && conn.watch != nil {
		conn.watch.enter() // until net/http marks the connection idle (ConnState)
	}
	st := &reqState{start: h.cfg.Now()}
	st.id = requestID(r.Header.Get("X-Request-Id"))
	st.host = NormalizeHost(r.Host)
	st.clientIP = h.clientIP(r)

	// 1. Hygiene: before anything else looks at the request.
	stripInbound(r.Header, h.trusted(r.RemoteAddr))
	if !upgradeAllowed(r) {
		r.Header.Del("Upgrade")
	}
	if m := r.Method; strings.EqualFold(m, http.MethodConnect) || strings.EqualFold(m, http.MethodTrace) || strings.EqualFold(m, "TRACK") {
		// CONNECT opens a tunnel; TRACE echoes the request, headers and all.
		st.path = targetForLog(r.RequestURI)
		h.refuse(w, r, st, policy.ReasonBadRequest, "method "+m+" is not proxied")
		return
	}
	raw, ok := rawPath(r.RequestURI)
	if !ok {
		st.path = targetForLog(r.RequestURI)
		h.refuse(w, r, st, policy.ReasonBadRequest, "request target is not an origin-form path")
		return
	}
	decoded, err := policy.CanonicalPath(raw)
	if err != nil {
		st.path = safeLogPath(raw)
		h.refuse(w, r, st, policy.ReasonBadRequest, err.Error())
		return
	}
	st.path = decoded

	// 2. Policy snapshot: fail closed without one.
	st.snap = h.cfg.Snapshots.Current()
	if st.snap == nil || st.snap.Policy == nil {
		h.refuse(w, r, st, policy.ReasonUnavailable, "no policy snapshot has been loaded")
		return
	}

	// 3. Authentication: a token that is present must be valid, even on public routes.
	var caller *policy.Caller
	ident, present, err := h.verify(r, conn)
	if err != nil {
		h.refuse(w, r, st, policy.ReasonInvalidToken, err.Error())
		return
	}
	if present {
		st.ident = ident
		m := h.callerFor(st.ident, st.snap.Directory)
		st.groups, st.groupNames, st.groupsHeader = m.groups, m.names, m.header
		if m.user != nil && !m.user.Active() {
			h.refuse(w, r, st, policy.ReasonUserInactive, "okta user status "+m.user.Status)
			return
		}
		caller = m.caller
	}

	// 4. Authorisation.
	st.decision = st.snap.Policy.Decide(policy.Request{Host: st.host, Method: r.Method, Path: decoded}, caller)
	if st.decision.Effect != policy.Allow {
		h.refuse(w, r, st, st.decision.Reason, st.decision.Explain())
		return
	}

	// 5. Quota: after authorisation, so denied requests consume nothing.
	if h.cfg.Quota != nil && st.ident != nil {
		qd := h.cfg.Quota.Admit(r.Context(), QuotaCheck{Method: r.Method, Path: decoded, Subject: st.ident.Subject, UserID: st.ident.UserID, Groups: st.groups})
		st.quota = &qd
		if qd.Limited {
			setRateLimitHeaders(w.Header(), qd)
		}
		if !qd.Allowed {
			h.refuse(w, r, st, policy.ReasonQuotaExceeded, "quota "+qd.Quota+" exhausted")
			return
		}
	}

	// 6. Audit: no slot, no service.
	if err := h.cfg.Audit.Reserve(); err != nil {
		h.cfg.Metrics.auditRefused.Inc()
		h.refuseUnaudited(w, r, st, err)
		return
	}

	// 7. Forward.
	st.reason = policy.ReasonOK
	if st.quota != nil && st.quota.Unchecked {
		st.reason = policy.ReasonQuotaUnchecked
	}
	rw := &responseRecorder{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody {
		st.body = &clientBody{ReadCloser: r.Body}
		r.Body = st.body
	}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	h.rp.ServeHTTP(rw, r)
	status := rw.status
	if status == 0 {
		status = http.StatusOK
		if rw.hijacked {
			status = http.StatusSwitchingProtocols
		}
	}
	reason := st.reason
	if st.upstream != "" {
		reason = st.upstream
	}
	h.cfg.Audit.Commit(h.event(r, st, status, reason))
	h.observe(st, status, reason)
}

// verify authenticates r: present is false only without credentials. A
// verifier that can read the header itself gets the connection's memo
// (conn is nil outside a server that sets ConnContext).
func (h *Handler) verify(r *http.Request, conn *connInfo) (id *authn.Identity, present bool, err error) {
	ctx := r.Context()
	if h.hv != nil {
		var memo *authn.HeaderMemo
		if conn != nil {
			memo = &conn.memo
		}
		return h.hv.VerifyHeader(ctx, r.Header, memo)
	}
	tok, present, err := authn.BearerTokenFromHeader(r.Header)
	if err != nil || !present {
		return nil, present, err
	}
	id, err = h.cfg.Verifier.Verify(ctx, tok)
	return id, true, err
}

// connInfo is what a client connection carries for its requests, found
// with one context lookup per request: the memo through which a
// HeaderVerifier skips re-parsing the Authorization header a keep-alive
// connection repeats, and the connection itself when WatchListener
// accepted it.
type connInfo struct {
	memo  authn.HeaderMemo
	watch *watchConn
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it gives each client
// connection its connInfo.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	ci := &connInfo{}
	ci.watch, _ = c.(*watchConn)
	return context.WithValue(ctx, connKey{}, ci)
}

// rewrite builds the outbound request: canonical path, identity headers,
// X-Forwarded-*. Runs inside ReverseProxy, which has already removed
// hop-by-hop and inbound X-Forwarded-* headers from pr.Out.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(stateKey{}).(*reqState)
	pr.Out.URL.Path = st.path
	pr.Out.URL.RawPath = policy.EscapePath(st.path)
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.SetURL(h.cfg.Upstream)
	trusted := h.trusted(pr.In.RemoteAddr)
	if trusted {
		// A trusted proxy's chain is kept and our peer appended to it.
		if xff := pr.In.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			pr.Out.Header["X-Forwarded-For"] = xff
		}
	}
	// X-Forwarded-Host is always the Host the rules and the audit event saw,
	// also behind a trusted proxy: one that passes its client's own
	// X-Forwarded-Host through would otherwise let the upstream route on a
	// host no host rule was evaluated for.
	pr.SetXForwarded()
	if trusted {
		if p := pr.In.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			pr.Out.Header.Set("X-Forwarded-Proto", p)
		}
	}
	out := pr.Out.Header
	out.Set("X-Request-Id", st.id)
	if st.ident != nil {
		out.Set("X-Okproxy-User", headerSafe(st.ident.Subject))
		if st.ident.UserID != "" {
			out.Set("X-Okproxy-User-Id", headerSafe(st.ident.UserID))
		}
		out.Set("X-Okproxy-Groups", headerSafe(st.groupsHeader))
	}
	out.Set("X-Okproxy-Rule", st.decision.Granted)
}

// clientBody notes a failure reading the client's request body while it is
// streamed upstream, so the error handler can tell a malformed request from
// a failing upstream.
type clientBody struct {
	io.ReadCloser
	err atomic.Pointer[error]
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// failed is the first error reading the body, or nil.
func (b *clientBody) failed() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

// modifyResponse gives a proxied response the request id the upstream and
// the audit event got, unless the upstream set its own.
func (h *Handler) modifyResponse(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if err := checkUpgradeResponse(resp); err != nil {
			return err // ErrorHandler: 502, and the upstream connection is closed
		}
	}
	if st, _ := resp.Request.Context().Value(stateKey{}).(*reqState); st != nil && resp.Header.Get("X-Request-Id") == "" {
		resp.Header.Set("X-Request-Id", st.id)
	}
	return nil
}

// upstreamError maps transport failures to 502/504 with the proxy's JSON
// body, or to 400 when it was the client's body that failed.
func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	reason := policy.ReasonBadGateway
	var ne net.Error
	switch {
	case st != nil && st.body != nil && st.body.failed() != nil:
		// The client's body could not be read (bad chunking, the client
		// gone mid-upload): the client's fault, not the upstream's.
		reason, err = policy.ReasonBadRequest, st.body.failed()
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		reason = policy.ReasonGatewayTimeout
	}
	if st != nil {
		st.upstream = reason
		st.detail = err.Error()
	}
	if reason == policy.ReasonBadRequest {
		h.cfg.Logger.Info("request refused: the client's body could not be read", "request_id", idOf(st), "reason", reason, "err", err)
	} else {
		h.cfg.Logger.Warn("upstream request failed", "request_id", idOf(st), "reason", reason, "err", err)
	}
	writeError(w, reason, idOf(st))
}

func idOf(st *reqState) string {
	if st == nil {
		return ""
	}
	return st.id
}

// refuse answers a request the proxy decided itself and audits it. If the
// audit event cannot be queued or spooled the answer becomes 503.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, st *reqState, reason policy.Reason, detail string) {
	st.detail = detail
	ev := h.event(r, st, StatusFor(reason), reason)
	if err := h.cfg.Audit.Record(ev); err != nil {
		h.cfg.Metrics.auditRefused.Inc()
		h.refuseUnaudited(w, r, st, err)
		return
	}
	h.log(st, reason, r)
	writeError(w, reason, st.id)
	h.observe(st, StatusFor(reason), reason)
}

// refuseUnaudited is the answer when the audit trail cannot take the event.
func (h *Handler) refuseUnaudited(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	h.cfg.Logger.Error("audit unavailable; refusing request", "request_id", st.id, "method", r.Method, "path", st.path, "err", err)
	// The 503 itself is audited: a Commit without a reservation waits in the
	// writer's small refusal buffer until there is room.
	h.cfg.Audit.Commit(h.event(r, st, http.StatusServiceUnavailable, policy.ReasonUnavailable))
	writeError(w, policy.ReasonUnavailable, st.id)
	h.observe(st, http.StatusServiceUnavailable, policy.ReasonUnavailable)
}

func (h *Handler) log(st *reqState, reason policy.Reason, r *http.Request) {
	attrs := []any{"request_id", st.id, "decision", decisionOf(reason), "reason", reason, "method", r.Method,
		"path", st.path, "client_ip", st.clientIP, "detail", st.detail}
	if st.ident != nil {
		attrs = append(attrs, "subject", st.ident.Subject)
	}
	if st.decision.Denied != "" {
		attrs = append(attrs, "rule", st.decision.Denied, "group", st.decision.DeniedGroup)
	}
	if d := st.decision; d.AmbiguousRule != "" {
		// Why a grant that looks right did not apply: see `rules lint`.
		attrs = append(attrs, "ambiguous_rule", d.AmbiguousRule, "ambiguous_group", d.AmbiguousGroup, "ambiguous_group_ids", d.AmbiguousIDs)
	}
	h.cfg.Logger.Info("request refused", attrs...)
}

// ResolveGroups picks a verified caller's groups per source (SPEC §4) and
// returns the synced directory user when one was found. serve and
// `rules test --token` both use it, so they cannot disagree.
func ResolveGroups(source GroupsSource, id *authn.Identity, dir *directory.Directory) ([]policy.GroupRef, *directory.User) {
	var user *directory.User
	if dir != nil && dir.Synced {
		user, _ = dir.Lookup(id.UserID, id.Subject)
	}
	fromToken := func() []policy.GroupRef {
		g := make([]policy.GroupRef, len(id.Groups))
		for i, n := range id.Groups {
			g[i] = policy.GroupRef{Name: n}
		}
		return g
	}
	fromDir := func() []policy.GroupRef {
		if user == nil {
			return nil
		}
		return user.Groups
	}
	switch source {
	case GroupsToken:
		return fromToken(), user
	case GroupsDirectory:
		return fromDir(), user
	case GroupsUnion:
		return append(fromToken(), fromDir()...), user
	}
	if !id.GroupsClaimPresent || len(id.Groups) >= OktaGroupsCap {
		return fromDir(), user
	}
	return fromToken(), user
}

// groupNames returns the caller's distinct group names (case-insensitively)
// and their comma-joined header value.
func groupNames(gs []policy.GroupRef) ([]string, string) {
	names := make([]string, 0, len(gs))
	seen := make(map[string]bool, len(gs))
	for _, g := range gs {
		k := strings.ToLower(g.Name)
		if seen[k] {
			continue
		}
		seen[k] = true
		names = append(names, g.Name)
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.ContainsAny(n, ",%") }) {
		return names, strings.Join(names, ",")
	}
	// Okta group names may contain commas: an upstream splitting the header
	// on commas must not read a group named "Ops,Admins" as membership of
	// Admins. A comma or percent sign inside a name is percent-encoded.
	enc := make([]string, len(names))
	for i, n := range names {
		enc[i] = groupNameEscaper.Replace(n)
	}
	return names, strings.Join(enc, ",")
}

var groupNameEscaper = strings.NewReplacer("%", "%25", ",", "%2C")

func (h *Handler) event(r *http.Request, st *reqState, status int, reason policy.Reason) *audit.Event {
	e := &audit.Event{
		Time:      st.start,
		RequestID: st.id,
		Replica:   h.cfg.Replica,
		Method:    r.Method,
		Host:      st.host,
		Path:      st.path,
		Status:    status,
		Decision:  decisionOf(reason),
		Reason:    string(reason),
		Rules:     st.decision.Matched,
		Rule:      st.decision.Granted,
		ClientIP:  st.clientIP,
		UserAgent: truncate(r.UserAgent(), 512),
		LatencyMS: float64(h.cfg.Now().Sub(st.start).Microseconds()) / 1000,
	}
	if st.snap != nil {
		e.PolicyVersion = st.snap.PolicyVersion
	}
	if st.decision.Denied != "" {
		e.Rule = st.decision.Denied
	}
	e.Shadow = audit.FormatShadow(st.decision.Shadow)
	if sh := st.decision.Shadow; sh != nil && len(sh.Matched) > 0 {
		// Report-only rules matched too: `audit query --rule NAME` must find
		// the traffic a rule in report mode is being watched against.
		e.Rules = slices.Concat(st.decision.Matched, sh.Matched)
	}
	if id := st.ident; id != nil {
		e.Subject, e.UserID, e.Email, e.JTI, e.ClientID = id.Subject, id.UserID, id.Email, id.JTI, id.ClientID
		// Shared with the memo: audit events are read-only once built.
		e.Groups = st.groupNames
	}
	return e
}

// truncate cuts s to at most n bytes, on a UTF-8 character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// At most UTFMax-1 steps back: past that it is not a character that was
	// cut but bytes that are no UTF-8 at all (the audit writer replaces those).
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// decisionOf maps a reason to the audit decision: 5xx the proxy made are errors.
func decisionOf(r policy.Reason) string {
	switch r {
	case policy.ReasonOK, policy.ReasonQuotaUnchecked:
		return audit.DecisionAllow
	case policy.ReasonBadGateway, policy.ReasonGatewayTimeout, policy.ReasonUnavailable:
		return audit.DecisionError
	}
	return audit.DecisionDeny
}

func (h *Handler) observe(st *reqState, status int, reason policy.Reason) {
	rule := st.decision.Granted
	if st.decision.Denied != "" {
		rule = st.decision.Denied
	}
	h.cfg.Metrics.observe(decisionOf(reason), string(reason), rule, h.cfg.Now().Sub(st.start))
}
