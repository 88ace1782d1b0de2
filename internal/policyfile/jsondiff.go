package policyfile

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// knownOrder lists the fields of rules and quotas in file order, so that a
// diff of stored JSON reads like a diff of the file.
var knownOrder = append(slices.Clone(ruleFieldNames), quotaFieldNames...)

// DiffJSON compares two JSON objects field by field, as recorded in the
// admin event log (before/after of one change), whatever their shape: rules
// as policy.Rule, quotas as their own engineer wrote them. A nil or empty
// side is an absent object, so an add lists what it sets and a remove what
// it had. Fields print as in Plan.WriteText: lists in brackets, groups as
// "Name (id)".
func DiffJSON(before, after []byte) ([]FieldChange, error) {
	b, err := jsonObject(before)
	if err != nil {
		return nil, err
	}
	a, err := jsonObject(after)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(a)+len(b))
	for k := range b {
		keys = append(keys, k)
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	rank := func(k string) int {
		if i := slices.Index(knownOrder, k); i >= 0 {
			return i
		}
		return len(knownOrder)
	}
	slices.SortFunc(keys, func(x, y string) int {
		if c := rank(x) - rank(y); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	var out []FieldChange
	for _, k := range keys {
		if k == "name" || k == "created_at" || k == "updated_at" {
			continue // the object's name is printed with it; timestamps are not policy
		}
		bv, av := renderJSON(b[k]), renderJSON(a[k])
		if bv == av || isZero(b[k]) && isZero(a[k]) {
			continue
		}
		out = append(out, FieldChange{Field: k, Before: bv, After: av})
	}
	return out, nil
}

func jsonObject(raw []byte) (map[string]any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// isZero is true for absent, false, "" and empty lists, which omitempty
// makes interchangeable: they must not show up as changes.
func isZero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case bool:
		return !v
	case []any:
		return len(v) == 0
	}
	return false
}

// renderJSON prints a decoded JSON value compactly.
func renderJSON(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = renderJSON(x)
		}
		return list(s)
	case map[string]any:
		name, _ := v["name"].(string)
		id, _ := v["id"].(string)
		if name != "" || id != "" {
			return Group{Name: name, ID: id}.String()
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}
