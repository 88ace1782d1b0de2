package oktaorg

import "fmt"

// The mutators below change the org the way Okta changes: they stamp the
// timestamps a client relies on for incremental reads.

// RenameGroup changes a group's name (its id, and so rule bindings, stay).
func (o *Org) RenameGroup(id, name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	g, ok := o.groups[id]
	if !ok {
		return fmt.Errorf("group %q: not found", id)
	}
	g.Profile.Name = name
	g.LastUpdated = o.stamp()
	return nil
}

// RemoveGroup deletes a group and its memberships.
func (o *Org) RemoveGroup(id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.groups[id]; !ok {
		return fmt.Errorf("group %q: not found", id)
	}
	delete(o.groups, id)
	delete(o.members, id)
	return nil
}

// AddMember puts a user in a group, moving its lastMembershipUpdated.
func (o *Org) AddMember(groupID, userID string) error {
	return o.setMember(groupID, userID, true)
}

// RemoveMember takes a user out of a group, moving its lastMembershipUpdated.
func (o *Org) RemoveMember(groupID, userID string) error {
	return o.setMember(groupID, userID, false)
}

func (o *Org) setMember(groupID, userID string, in bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	g, ok := o.groups[groupID]
	if !ok {
		return fmt.Errorf("group %q: not found", groupID)
	}
	if _, ok := o.users[userID]; !ok {
		return fmt.Errorf("user %q: not found", userID)
	}
	if o.members[groupID][userID] == in {
		return nil
	}
	if in {
		o.members[groupID][userID] = true
	} else {
		delete(o.members[groupID], userID)
	}
	g.LastMembershipUpdated = o.stamp()
	return nil
}

// SetUserStatus changes a user's status. As in Okta, the user stays a
// member of its groups and the groups' lastMembershipUpdated does not move.
func (o *Org) SetUserStatus(id, status string) error {
	return o.UpdateUser(id, func(u *User) { u.Status = status })
}

// UpdateUser applies fn to a user and stamps lastUpdated (and statusChanged
// when the status changed).
func (o *Org) UpdateUser(id string, fn func(*User)) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	u, ok := o.users[id]
	if !ok {
		return fmt.Errorf("user %q: not found", id)
	}
	before := u.Status
	fn(u)
	u.ID = id
	now := o.stamp()
	u.LastUpdated = now
	if u.Status != before {
		u.StatusChanged = &now
	}
	return nil
}

// SetRuleStatus activates or deactivates a group rule.
func (o *Org) SetRuleStatus(id, status string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.rules[id]
	if !ok {
		return fmt.Errorf("rule %q: not found", id)
	}
	r.Status = status
	r.LastUpdated = o.stamp()
	return nil
}

// GroupByName returns the first group with that exact name.
func (o *Org) GroupByName(name string) (Group, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, g := range sortedValues(o.groups) {
		if g.Profile.Name == name {
			return *g, true
		}
	}
	return Group{}, false
}

// UserByLogin returns the user with that login.
func (o *Org) UserByLogin(login string) (User, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, u := range o.users {
		if u.Profile.Login == login {
			return *u, true
		}
	}
	return User{}, false
}

// Members returns the ids of a group's members, sorted.
func (o *Org) Members(groupID string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return sortedKeys(o.members[groupID])
}

// Counts returns how many groups, users and memberships the org holds.
func (o *Org) Counts() (groups, users, memberships int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.members {
		memberships += len(m)
	}
	return len(o.groups), len(o.users), memberships
}
