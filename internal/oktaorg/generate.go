package oktaorg

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// GenerateConfig sizes a generated org. Zero fields take the defaults
// (the measurement org of docs/sync.md).
type GenerateConfig struct {
	// Users is the number of users (default 5000).
	Users int
	// Groups is the number of groups, Everyone included (default 300).
	Groups int
	// PowerUserGroups is how many groups the first user,
	// power.user@example.com, belongs to (default 150, capped at Groups).
	PowerUserGroups int
	// Seed makes the org reproducible (default 1).
	Seed uint64
	// Now is the org's clock (default time.Now).
	Now func() time.Time
}

var (
	departments = []string{"Engineering", "Finance", "Sales", "Marketing", "Support", "Legal", "People", "Contracting"}
	titles      = []string{"Developer", "Developer", "Engineer", "Analyst", "Manager", "Director", "Specialist", "Consultant"}
	firstNames  = []string{"Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger"}
	lastNames   = []string{"Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen", "Dijkstra"}
)

// Generate builds a large, realistic org: a BUILT_IN Everyone group holding
// every user; Developers, Finance, Auditors and Contractors; OKTA_GROUP and
// APP_GROUP team groups; users mostly ACTIVE with some SUSPENDED,
// DEPROVISIONED and STAGED; each user in a few groups, one user in
// PowerUserGroups groups; and group rules assigning Developers by title and
// Finance by department, whose members match them.
func Generate(cfg GenerateConfig) *Org {
	if cfg.Users <= 0 {
		cfg.Users = 5000
	}
	if cfg.Groups <= 0 {
		cfg.Groups = 300
	}
	if cfg.PowerUserGroups <= 0 {
		cfg.PowerUserGroups = 150
	}
	cfg.PowerUserGroups = min(cfg.PowerUserGroups, cfg.Groups)
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	o := NewOrg(cfg.Now)
	o.rnd = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	rnd := rand.New(rand.NewPCG(cfg.Seed+1, cfg.Seed))
	created := o.stamp().Add(-365 * 24 * time.Hour)

	named := []struct{ name, desc, typ string }{
		{"Everyone", "All users in your organization", GroupTypeBuiltIn},
		{"Developers", "Assigned by rule dev-title", GroupTypeOkta},
		{"Finance", "Assigned by rule finance-dept", GroupTypeOkta},
		{"Auditors", "External and internal auditors", GroupTypeOkta},
		{"Contractors", "Non-employees", GroupTypeOkta},
	}
	var gids []string
	for i := range cfg.Groups {
		g := Group{Created: created, LastUpdated: created, LastMembershipUpdated: created}
		switch {
		case i < len(named):
			g.Profile = GroupProfile{Name: named[i].name, Description: named[i].desc}
			g.Type = named[i].typ
		case i%10 == 0:
			g.Profile = GroupProfile{Name: fmt.Sprintf("app-%s-users-%03d", departments[i%len(departments)], i), Description: "Imported from an application"}
			g.Type = GroupTypeApp
			g.ObjectClass = []string{"okta:windows_security_principal"}
		default:
			g.Profile = GroupProfile{Name: fmt.Sprintf("%s Team %03d", departments[i%len(departments)], i), Description: "Team group"}
		}
		id, _ := o.AddGroup(g)
		gids = append(gids, id)
	}
	everyone, developers, finance := gids[0], gids[min(1, len(gids)-1)], gids[min(2, len(gids)-1)]

	for i := range cfg.Users {
		st := StatusActive
		switch r := rnd.IntN(100); {
		case r < 2:
			st = StatusSuspended
		case r < 4:
			st = StatusDeprovisioned
		case r < 5:
			st = StatusStaged
		}
		fn, ln := firstNames[rnd.IntN(len(firstNames))], lastNames[rnd.IntN(len(lastNames))]
		login := fmt.Sprintf("user%05d@example.com", i)
		title, dept := titles[rnd.IntN(len(titles))], departments[rnd.IntN(len(departments))]
		if i == 0 {
			login, fn, ln, title, dept, st = "power.user@example.com", "Power", "User", "Manager", "People", StatusActive
		}
		id, _ := o.AddUser(User{Status: st, Created: created, LastUpdated: created,
			Profile: UserProfile{FirstName: fn, LastName: ln, Login: login, Email: login, Department: dept, Title: title}})
		in := map[string]bool{everyone: true}
		if i == 0 {
			for _, gid := range gids[:cfg.PowerUserGroups] {
				in[gid] = true
			}
		} else {
			if title == "Developer" {
				in[developers] = true
			}
			if dept == "Finance" {
				in[finance] = true
			}
			for range 1 + rnd.IntN(5) {
				in[gids[rnd.IntN(len(gids))]] = true
			}
		}
		for gid := range in {
			o.members[gid][id] = true
		}
	}
	o.AddRule(GroupRule{Name: "dev-title", Status: RuleActive, Created: created, LastUpdated: created,
		Conditions: RuleConditions{Expression: RuleExpression{Value: `user.title == "Developer"`}},
		Actions:    RuleActions{AssignUserToGroups: RuleAssignment{GroupIDs: []string{developers}}}})
	o.AddRule(GroupRule{Name: "finance-dept", Status: RuleActive, Created: created, LastUpdated: created,
		Conditions: RuleConditions{Expression: RuleExpression{Value: `user.department == "Finance"`}},
		Actions:    RuleActions{AssignUserToGroups: RuleAssignment{GroupIDs: []string{finance}}}})
	return o
}
