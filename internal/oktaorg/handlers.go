package oktaorg

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

type link map[string]string

type groupOut struct {
	Group
	Links map[string]any `json:"_links"`
}

type userOut struct {
	User
	Links map[string]any `json:"_links"`
}

func base(r *http.Request) string { return "http://" + r.Host }

func renderGroup(r *http.Request, g Group) groupOut {
	self := base(r) + "/api/v1/groups/" + g.ID
	return groupOut{Group: g, Links: map[string]any{
		"logo":  []link{{"name": "medium", "href": "https://ok12static.oktacdn.com/assets/img/logos/groups/okta-medium.png", "type": "image/png"}},
		"users": link{"href": self + "/users"},
		"apps":  link{"href": self + "/apps"},
	}}
}

func renderUser(r *http.Request, u User) userOut {
	return userOut{User: u, Links: map[string]any{"self": link{"href": base(r) + "/api/v1/users/" + u.ID}}}
}

// limitParam reads ?limit=, clamped to [1, max] like Okta does.
func limitParam(r *http.Request, def, maxLimit int) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, maxLimit)
}

// paginate picks the page of ids after the request's cursor and sets the
// Link headers: rel="self" always, rel="next" while more follow, as
// separate headers (or one comma-joined header when configured so).
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, ids []string, def, maxLimit int) []string {
	q := r.URL.Query()
	limit := limitParam(r, def, maxLimit)
	page, more := pageAfter(ids, q.Get("after"), limit)
	self := base(r) + r.URL.Path
	if r.URL.RawQuery != "" {
		self += "?" + r.URL.RawQuery
	}
	links := []string{"<" + self + `>; rel="self"`}
	if more && len(page) > 0 {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("after", page[len(page)-1])
		nq.Set("limit", strconv.Itoa(limit))
		links = append(links, "<"+base(r)+r.URL.Path+"?"+nq.Encode()+`>; rel="next"`)
	}
	if s.cfg.CommaJoinedLinks {
		w.Header().Set("Link", strings.Join(links, ", "))
	} else {
		for _, l := range links {
			w.Header().Add("Link", l)
		}
	}
	return page
}

func (o *Org) groupSnapshot() []Group {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Group, 0, len(o.groups))
	for _, g := range sortedValues(o.groups) {
		out = append(out, *g)
	}
	return out
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var filter, search expr
	var err error
	if f := q.Get("filter"); f != "" {
		if filter, err = parseExpr(f, groupFilterAttrs); err != nil {
			return badSearch(err)
		}
	}
	if f := q.Get("search"); f != "" {
		if search, err = parseExpr(f, nil); err != nil {
			return badSearch(err)
		}
	}
	prefix := strings.ToLower(q.Get("q"))
	var match []Group
	for _, g := range s.cfg.Org.groupSnapshot() {
		get := groupAttr(&g)
		if (filter != nil && !filter.eval(get)) || (search != nil && !search.eval(get)) {
			continue
		}
		if prefix != "" && !strings.HasPrefix(strings.ToLower(g.Profile.Name), prefix) {
			continue
		}
		match = append(match, g)
	}
	if prefix != "" {
		// A query is an auto-complete lookup: Okta does not page it.
		match = match[:min(len(match), limitParam(r, 300, 300))]
		out := make([]groupOut, len(match))
		for i, g := range match {
			out[i] = renderGroup(r, g)
		}
		w.Header().Add("Link", "<"+base(r)+r.URL.RequestURI()+`>; rel="self"`)
		return writeJSON(w, out)
	}
	byID := make(map[string]Group, len(match))
	ids := make([]string, len(match))
	for i, g := range match {
		ids[i] = g.ID
		byID[g.ID] = g
	}
	page := s.paginate(w, r, ids, 10000, 10000)
	out := make([]groupOut, len(page))
	for i, id := range page {
		out[i] = renderGroup(r, byID[id])
	}
	return writeJSON(w, out)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	o := s.cfg.Org
	o.mu.Lock()
	g, ok := o.groups[r.PathValue("id")]
	var cp Group
	if ok {
		cp = *g
	}
	o.mu.Unlock()
	if !ok {
		return notFound(r.PathValue("id") + " (UserGroup)")
	}
	return writeJSON(w, renderGroup(r, cp))
}

// listGroupUsers lists every member, DEPROVISIONED ones included, as Okta
// does: clients must filter on status themselves.
func (s *Server) listGroupUsers(w http.ResponseWriter, r *http.Request) error {
	o := s.cfg.Org
	id := r.PathValue("id")
	o.mu.Lock()
	_, ok := o.groups[id]
	ids := sortedKeys(o.members[id])
	o.mu.Unlock()
	if !ok {
		return notFound(id + " (UserGroup)")
	}
	page := s.paginate(w, r, ids, 1000, 1000)
	out := make([]userOut, 0, len(page))
	o.mu.Lock()
	for _, uid := range page {
		if u, ok := o.users[uid]; ok {
			out = append(out, renderUser(r, *u))
		}
	}
	o.mu.Unlock()
	return writeJSON(w, out)
}

func (s *Server) listGroupRules(w http.ResponseWriter, r *http.Request) error {
	o := s.cfg.Org
	kw := strings.ToLower(r.URL.Query().Get("search"))
	o.mu.Lock()
	byID := map[string]GroupRule{}
	var ids []string
	for _, gr := range o.rules {
		if kw != "" && !strings.Contains(strings.ToLower(gr.Name), kw) {
			continue
		}
		byID[gr.ID] = *gr
		ids = append(ids, gr.ID)
	}
	o.mu.Unlock()
	sort.Strings(ids)
	page := s.paginate(w, r, ids, 50, 200)
	out := make([]GroupRule, len(page))
	for i, id := range page {
		out[i] = byID[id]
	}
	return writeJSON(w, out)
}

// listUsers omits DEPROVISIONED users unless a search or filter is given,
// as Okta does.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var cond expr
	var err error
	for _, p := range []string{"search", "filter"} {
		if v := q.Get(p); v != "" {
			if cond, err = parseExpr(v, nil); err != nil {
				return badSearch(err)
			}
		}
	}
	o := s.cfg.Org
	o.mu.Lock()
	byID := map[string]User{}
	var ids []string
	for _, u := range o.users {
		if cond == nil && u.Status == StatusDeprovisioned {
			continue
		}
		if cond != nil && !cond.eval(userAttr(u)) {
			continue
		}
		byID[u.ID] = *u
		ids = append(ids, u.ID)
	}
	o.mu.Unlock()
	sort.Strings(ids)
	page := s.paginate(w, r, ids, 200, 200)
	out := make([]userOut, len(page))
	for i, id := range page {
		out[i] = renderUser(r, byID[id])
	}
	return writeJSON(w, out)
}

// getUser looks a user up by id or by login, as Okta does.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	o := s.cfg.Org
	key := r.PathValue("id")
	o.mu.Lock()
	u, ok := o.users[key]
	if !ok {
		for _, c := range o.users {
			if strings.EqualFold(c.Profile.Login, key) {
				u, ok = c, true
				break
			}
		}
	}
	var cp User
	if ok {
		cp = *u
	}
	o.mu.Unlock()
	if !ok {
		return notFound(key + " (User)")
	}
	return writeJSON(w, renderUser(r, cp))
}
