package okta

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	sdk "github.com/okta/okta-sdk-golang/v2/okta"
	"github.com/okta/okta-sdk-golang/v2/okta/query"
)

// This file is the only place okproxy uses okta-sdk-golang/v2.

// DefaultScopes are requested in OAuth (private key) mode: read-only
// access to groups, their rules and users.
var DefaultScopes = []string{"okta.groups.read", "okta.users.read"}

// ClientConfig configures NewSDKSource. Authenticate with either APIToken
// or ClientID + PrivateKey.
type ClientConfig struct {
	// OrgURL is the Okta org, e.g. https://example.okta.com.
	OrgURL string
	// APIToken is an SSWS API token. Never logged.
	APIToken string
	// ClientID is the OAuth 2.0 service app's client id (private key mode).
	ClientID string
	// PrivateKey is the service app's RSA private key as PEM, PKCS#1 or
	// PKCS#8 (converted, since the SDK takes PKCS#1 only). Never logged.
	PrivateKey []byte
	// PrivateKeyID is the key's kid as registered with the app (optional).
	PrivateKeyID string
	// Scopes requested in private key mode (default DefaultScopes).
	Scopes []string
	// AllowHTTP permits an http:// OrgURL on a loopback host only (local
	// test doubles); it maps to the SDK's WithTestingDisableHttpsCheck.
	AllowHTTP bool
	// GroupPageSize, MemberPageSize and UserPageSize are the `limit` of
	// each listing (default 200, 1000 and 200: Okta's recommendation for
	// groups, its default for members).
	GroupPageSize, MemberPageSize, UserPageSize int
	// MaxPages bounds every listing (default 10000): a listing that needs
	// more fails rather than spin on a broken `next` link.
	MaxPages int
	// MaxRateLimitWait bounds the time one request may spend waiting out
	// 429s (default 30m).
	MaxRateLimitWait time.Duration
	// Retries of 5xx answers and network errors per request (default 3,
	// with backoff 1s, 2s, 4s); negative disables retries.
	Retries int
	// ResponseTimeout bounds the wait for response headers of one attempt
	// (default 60s).
	ResponseTimeout time.Duration
	// Sleep waits out rate limits and backoffs (default RealSleep).
	Sleep Sleeper
	// Now is the local clock (default time.Now).
	Now func() time.Time
	// Transport is the HTTP transport under the retry layer (default a
	// dedicated http.Transport honouring HTTPS_PROXY).
	Transport http.RoundTripper
	// Logger receives retries and rate-limit waits (default discard).
	Logger *slog.Logger
}

// SDKSource is the GroupSource backed by okta-sdk-golang/v2.
type SDKSource struct {
	client *sdk.Client
	rt     *retryTransport
	cfg    ClientConfig
}

var _ GroupSource = (*SDKSource)(nil)

// NewSDKSource validates cfg and builds an SDK client configured
// explicitly: every setting the SDK would otherwise pick up from
// ~/.okta/okta.yaml, .okta.yaml or OKTA_CLIENT_* variables is overridden,
// and its response cache (which caches list calls and would make a second
// sync read stale pages) is off.
func NewSDKSource(ctx context.Context, cfg ClientConfig) (*SDKSource, error) {
	orgURL, err := checkOrgURL(cfg.OrgURL, cfg.AllowHTTP)
	if err != nil {
		return nil, err
	}
	keyMode := cfg.ClientID != "" || len(cfg.PrivateKey) > 0
	var key string
	switch {
	case cfg.APIToken != "" && keyMode:
		return nil, &ConfigError{"APIToken", "give either OKTA_API_TOKEN or --okta-client-id with --okta-private-key-file, not both"}
	case cfg.APIToken == "" && !keyMode:
		return nil, &ConfigError{"APIToken", "no Okta credentials: set OKTA_API_TOKEN, or --okta-client-id with --okta-private-key-file"}
	case keyMode && cfg.ClientID == "":
		return nil, &ConfigError{"ClientID", "--okta-private-key-file needs --okta-client-id"}
	case keyMode && len(cfg.PrivateKey) == 0:
		return nil, &ConfigError{"PrivateKey", "--okta-client-id needs --okta-private-key-file"}
	case keyMode:
		if key, err = pkcs1PEM(cfg.PrivateKey); err != nil {
			return nil, &ConfigError{"PrivateKey", err.Error()}
		}
	case strings.ContainsAny(cfg.APIToken, " \t\r\n"):
		return nil, &ConfigError{"APIToken", "OKTA_API_TOKEN contains whitespace"}
	}
	cfg.GroupPageSize = cmp.Or(cfg.GroupPageSize, 200)
	cfg.MemberPageSize = cmp.Or(cfg.MemberPageSize, 1000)
	cfg.UserPageSize = cmp.Or(cfg.UserPageSize, 200)
	cfg.MaxPages = cmp.Or(cfg.MaxPages, 10000)
	if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	if cfg.Sleep == nil {
		cfg.Sleep = RealSleep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	base := cfg.Transport
	if base == nil {
		base = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: cmp.Or(cfg.ResponseTimeout, 60*time.Second),
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   16,
		}
	}
	rt := &retryTransport{next: base, sleep: cfg.Sleep, now: cfg.Now, log: cfg.Logger,
		maxWait: cmp.Or(cfg.MaxRateLimitWait, 30*time.Minute), retries: max(cfg.Retries, 0), backoff: time.Second}

	mode, token, clientID, scopes := "SSWS", cfg.APIToken, "", []string(nil)
	if keyMode {
		mode, token, clientID, scopes = "PrivateKey", "", cfg.ClientID, cfg.Scopes
	}
	// Setters run after the SDK has read its files and environment, so
	// each one below overrides whatever those held. All of them are set,
	// even to empty values, so nothing from the environment survives.
	setters := []sdk.ConfigSetter{
		sdk.WithOrgUrl(orgURL),
		sdk.WithAuthorizationMode(mode),
		sdk.WithToken(token),
		sdk.WithClientId(clientID),
		sdk.WithScopes(scopes),
		sdk.WithPrivateKey(key),
		sdk.WithPrivateKeyId(cfg.PrivateKeyID),
		sdk.WithPrivateKeySigner(nil),
		sdk.WithClientAssertion(""),
		sdk.WithCache(false),
		sdk.WithCacheTtl(0),
		sdk.WithCacheTti(0),
		sdk.WithProxyHost(""),
		sdk.WithProxyPort(0),
		sdk.WithProxyUsername(""),
		sdk.WithProxyPassword(""),
		sdk.WithConnectionTimeout(60),
		// 0: no SDK-level deadline, which would also cut our rate-limit
		// waits short; the transport bounds each attempt instead.
		sdk.WithRequestTimeout(0),
		// Our transport waits out 429s; the SDK must not sleep on its own.
		sdk.WithRateLimitMaxRetries(0),
		sdk.WithRateLimitMaxBackOff(1),
		sdk.WithTestingDisableHttpsCheck(cfg.AllowHTTP),
		sdk.WithUserAgentExtra("okproxy"),
		sdk.WithHttpClientPtr(&http.Client{Transport: rt}),
	}
	_, client, err := sdk.NewClient(ctx, setters...)
	if err != nil {
		return nil, &ConfigError{"OrgURL", "okta client: " + err.Error()}
	}
	return &SDKSource{client: client, rt: rt, cfg: cfg}, nil
}

// Stats reports the traffic so far.
func (s *SDKSource) Stats() SourceStats { return s.rt.stats() }

// ListGroups implements GroupSource.
func (s *SDKSource) ListGroups(ctx context.Context, sel Selection) ([]Group, error) {
	opts := []query.ParamOptions{query.WithLimit(int64(s.cfg.GroupPageSize))}
	if sel.Filter != "" {
		opts = append(opts, query.WithFilter(sel.Filter))
	}
	if sel.Search != "" {
		opts = append(opts, query.WithSearch(sel.Search))
	}
	gs, err := collect(ctx, s, "list groups", func() ([]*sdk.Group, *sdk.Response, error) {
		return s.client.Group.ListGroups(ctx, query.NewQueryParams(opts...))
	})
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			return nil, &SelectionError{Selection: sel, Err: err}
		}
		return nil, err
	}
	out := make([]Group, 0, len(gs))
	for _, g := range gs {
		if g == nil || g.Id == "" {
			continue
		}
		og := Group{ID: g.Id, Type: g.Type, LastUpdated: timeOf(g.LastUpdated), LastMembershipUpdated: timeOf(g.LastMembershipUpdated)}
		if g.Profile != nil {
			og.Name, og.Description = g.Profile.Name, g.Profile.Description
		}
		out = append(out, og)
	}
	return out, nil
}

// ListMembers implements GroupSource.
func (s *SDKSource) ListMembers(ctx context.Context, groupID string) ([]User, error) {
	us, err := collect(ctx, s, "list members of group "+groupID, func() ([]*sdk.User, *sdk.Response, error) {
		return s.client.Group.ListGroupUsers(ctx, groupID, query.NewQueryParams(query.WithLimit(int64(s.cfg.MemberPageSize))))
	})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %w", ErrGroupNotFound, err)
	}
	return users(us), err
}

// ListUsersUpdatedSince implements GroupSource. Okta's users search
// includes DEPROVISIONED users, which is the point: a deactivation does not
// move any group's lastMembershipUpdated.
func (s *SDKSource) ListUsersUpdatedSince(ctx context.Context, since time.Time) ([]User, error) {
	search := fmt.Sprintf(`lastUpdated gt "%s"`, since.UTC().Format("2006-01-02T15:04:05.000Z"))
	us, err := collect(ctx, s, "list changed users", func() ([]*sdk.User, *sdk.Response, error) {
		return s.client.User.ListUsers(ctx, query.NewQueryParams(query.WithSearch(search), query.WithLimit(int64(s.cfg.UserPageSize))))
	})
	return users(us), err
}

// ListGroupRules implements GroupSource.
func (s *SDKSource) ListGroupRules(ctx context.Context) ([]GroupRule, error) {
	rs, err := collect(ctx, s, "list group rules", func() ([]*sdk.GroupRule, *sdk.Response, error) {
		return s.client.Group.ListGroupRules(ctx, query.NewQueryParams(query.WithLimit(200)))
	})
	if err != nil {
		return nil, err
	}
	out := make([]GroupRule, 0, len(rs))
	for _, r := range rs {
		if r == nil || r.Id == "" {
			continue
		}
		gr := GroupRule{ID: r.Id, Name: r.Name, Status: r.Status}
		if r.Conditions != nil && r.Conditions.Expression != nil {
			gr.Expression = r.Conditions.Expression.Value
		}
		if r.Actions != nil && r.Actions.AssignUserToGroups != nil {
			gr.GroupIDs = append([]string(nil), r.Actions.AssignUserToGroups.GroupIds...)
		}
		out = append(out, gr)
	}
	return out, nil
}

func users(us []*sdk.User) []User {
	out := make([]User, 0, len(us))
	for _, u := range us {
		if u == nil || u.Id == "" {
			continue
		}
		ou := User{ID: u.Id, Status: u.Status}
		if u.Profile != nil {
			p := *u.Profile
			str := func(k string) string { s, _ := p[k].(string); return s }
			ou.Login, ou.Email, ou.FirstName, ou.LastName = str("login"), str("email"), str("firstName"), str("lastName")
			ou.Department, ou.Title = str("department"), str("title")
		}
		out = append(out, ou)
	}
	return out
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// collect follows a listing to its end. Each page is decoded into a fresh
// slice (the SDK decodes into the slice it is given, so reusing one would
// overwrite earlier pages). The next link is read from the Link headers
// here rather than by the SDK, whose parser takes the self link for the
// next one when Okta (or a proxy) joins both into one header and then loops
// forever; a repeated link or more than MaxPages pages fails the listing.
func collect[T any](ctx context.Context, s *SDKSource, op string, first func() ([]T, *sdk.Response, error)) ([]T, error) {
	items, resp, err := first()
	if err != nil {
		return nil, apiError(op, resp, err)
	}
	all := append([]T(nil), items...)
	seen := map[string]bool{}
	if resp.Request != nil {
		seen[normalize(resp.Request.URL)] = true
	}
	for pages := 1; ; pages++ {
		next, err := nextLink(resp)
		if err != nil {
			return nil, fmt.Errorf("okta %s: %w", op, err)
		}
		if next == "" {
			return all, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("okta %s: pagination loop: the next link %q was already fetched", op, next)
		}
		if pages >= s.cfg.MaxPages {
			return nil, fmt.Errorf("okta %s: more than %d pages; giving up rather than syncing a partial list", op, s.cfg.MaxPages)
		}
		seen[next] = true
		resp.NextPage = next
		page := []T{}
		if resp, err = resp.Next(ctx, &page); err != nil {
			return nil, apiError(op, resp, err)
		}
		all = append(all, page...)
	}
}

// nextLink finds rel="next" among the Link headers, whether sent as
// separate headers (as Okta does) or comma-joined, and returns it as a
// normalized path?query relative to the org.
func nextLink(resp *sdk.Response) (string, error) {
	for _, h := range resp.Header.Values("Link") {
		for _, lv := range splitLinks(h) {
			target, params, ok := strings.Cut(lv, ";")
			if !ok {
				continue
			}
			target = strings.TrimSpace(target)
			if !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			isNext := false
			for _, p := range strings.Split(params, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(v, `"`) == "next" {
					isNext = true
				}
			}
			if !isNext {
				continue
			}
			u, err := url.Parse(target[1 : len(target)-1])
			if err != nil {
				return "", fmt.Errorf("bad next link: %v", err)
			}
			return normalize(u), nil
		}
	}
	return "", nil
}

// splitLinks splits a Link header value at the commas between link-values
// (commas inside <...> belong to the URL).
func splitLinks(h string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range h {
		switch c {
		case '<':
			depth++
		case '>':
			depth = max(depth-1, 0)
		case ',':
			if depth == 0 {
				out = append(out, h[start:i])
				start = i + 1
			}
		}
	}
	return append(out, h[start:])
}

// normalize drops scheme and host (the SDK prefixes the org URL) and sorts
// the query so equal links compare equal.
func normalize(u *url.URL) string {
	return u.EscapedPath() + "?" + u.Query().Encode()
}

// apiError turns an SDK error into an APIError carrying Okta's status and
// error code; transport errors pass through wrapped.
func apiError(op string, resp *sdk.Response, err error) error {
	var oe *sdk.Error
	if resp != nil && resp.Response != nil && errors.As(err, &oe) {
		return &APIError{Op: op, Status: resp.StatusCode, Code: oe.ErrorCode, Summary: cmp.Or(oe.ErrorSummary, oe.ErrorDescription, oe.ErrorMessage)}
	}
	if resp != nil && resp.Response != nil && resp.StatusCode >= 400 {
		return &APIError{Op: op, Status: resp.StatusCode, Summary: err.Error()}
	}
	// A transport error names the URL, and the SDK sends the OAuth client
	// assertion (a signed credential) in the token request's query string:
	// keep only the path.
	var ue *url.Error
	if errors.As(err, &ue) {
		path := "(unparsable URL)"
		if u, perr := url.Parse(ue.URL); perr == nil {
			path = u.Path
		}
		return fmt.Errorf("okta %s: %s %s: %w", op, ue.Op, path, ue.Err)
	}
	return fmt.Errorf("okta %s: %w", op, err)
}
