package main

// The scenarios of the harness's configs (interop/configs in
// github.com/mlswg/mls-implementations), written out here as step lists so
// that CI needs no checkout of that repository. Step numbers refer to
// earlier steps of the same scenario, as in the configs.

// ext is a GroupContext extension given in a step.
type ext struct {
	typ  uint32
	data []byte
}

// desc describes a proposal committed by value or sent by an external
// signer.
type desc struct {
	kind          string // add, remove, externalPSK, resumptionPSK, groupContextExtensions, reinit
	keyPackage    int
	removed       string
	psk           int
	epoch         uint64
	exts          []ext
	changeGroupID bool
	changeSuite   bool
}

// step is one step of a scenario.
type step struct {
	action       string
	actor        string
	keyPackage   int
	joiner       string
	members      []string
	joiners      []string
	clients      []string
	byRef        []int
	byValue      []desc
	removed      string
	psk          int
	psks         []int
	epoch        uint64
	exts         []ext
	forcePath    bool
	externalTree bool
	removePrior  bool
	ad, pt       string
	ciphertext   int
	signer       string
	member       string
	description  *desc
	// reinit
	proposer, committer, welcomer string
	changeSuite, changeGroupID    bool
	externalReinitProposal        int
}

var (
	requiredCaps     = ext{3, []byte{0, 0, 0}} // required_capabilities with empty lists
	noExternalSender = ext{5, []byte{0}}       // an empty external_senders list
)

func create(actor string, members ...string) step {
	return step{action: "createGroup", actor: actor, members: members}
}
func newKeyPackage(actor string) step { return step{action: "createKeyPackage", actor: actor} }
func externalJoin(actor, joiner string, members ...string) step {
	return step{action: "externalJoin", actor: actor, joiner: joiner, members: members}
}
func addProposal(actor string, kp int) step {
	return step{action: "addProposal", actor: actor, keyPackage: kp}
}
func removeProposal(actor, removed string) step {
	return step{action: "removeProposal", actor: actor, removed: removed}
}
func updateProposal(actor string) step { return step{action: "updateProposal", actor: actor} }
func installPSK(clients ...string) step {
	return step{action: "installExternalPSK", clients: clients}
}
func pskProposal(actor string, psk int) step {
	return step{action: "externalPSKProposal", actor: actor, psk: psk}
}
func resumptionProposal(actor string, epoch uint64) step {
	return step{action: "resumptionPSKProposal", actor: actor, epoch: epoch}
}
func gceProposal(actor string, exts ...ext) step {
	return step{action: "groupContextExtensionsProposal", actor: actor, exts: exts}
}
func protect(actor, ad, pt string) step {
	return step{action: "protect", actor: actor, ad: ad, pt: pt}
}
func unprotect(actor string, ciphertext int) step {
	return step{action: "unprotect", actor: actor, ciphertext: ciphertext}
}

// commit is a fullCommit step: actor commits, merges, the members process
// it and the joiners join.
func commit(actor string, byRef []int, members, joiners []string) step {
	return step{action: "fullCommit", actor: actor, byRef: byRef, members: members, joiners: joiners}
}

func (s step) withValues(d ...desc) step { s.byValue = d; return s }
func (s step) path() step                { s.forcePath = true; return s }
func (s step) outOfBandTree() step       { s.externalTree = true; return s }

func refs(r ...int) []int           { return r }
func names(n ...string) []string    { return n }
func addValue(kp int) desc          { return desc{kind: "add", keyPackage: kp} }
func removeValue(who string) desc   { return desc{kind: "remove", removed: who} }
func pskValue(psk int) desc         { return desc{kind: "externalPSK", psk: psk} }
func resumptionValue(e uint64) desc { return desc{kind: "resumptionPSK", epoch: e} }

// scenarios are the scripts of the harness's configs, by config and name.
var scenarios = map[string]map[string][]step{
	"welcome_join": {
		"no_path_secret": {create("alice"), newKeyPackage("bob"), addProposal("alice", 1), commit("alice", refs(2), nil, names("bob"))},
		"with_path_secret": {create("alice"), newKeyPackage("bob"), addProposal("alice", 1),
			commit("alice", refs(2), nil, names("bob")).path()},
		"with_psk": {create("alice"), newKeyPackage("bob"), addProposal("alice", 1), installPSK("alice", "bob"), pskProposal("alice", 3),
			commit("alice", refs(2, 4), nil, names("bob"))},
		"with_external_tree": {create("alice"), newKeyPackage("bob"), addProposal("alice", 1),
			commit("alice", refs(2), nil, names("bob")).outOfBandTree()},
	},
	"external_join": {
		"normal":   {create("alice"), externalJoin("alice", "bob")},
		"with_psk": {create("alice"), installPSK("alice"), {action: "externalJoin", actor: "alice", joiner: "bob", psks: []int{1}}},
		"removing_prior": {create("alice"), externalJoin("alice", "bob"),
			{action: "externalJoin", actor: "alice", joiner: "bob", removePrior: true}},
		"with_external_tree": {create("alice"), {action: "externalJoin", actor: "alice", joiner: "bob", externalTree: true}},
		"with_more_members": {create("alice"), newKeyPackage("bob"), newKeyPackage("charlie"), newKeyPackage("diana"),
			addProposal("alice", 1), addProposal("alice", 2), addProposal("alice", 3),
			commit("alice", refs(4, 5, 6), nil, names("bob", "charlie", "diana")),
			externalJoin("diana", "ellen", "alice", "bob", "charlie")},
	},
	"commit": {
		"empty": {create("alice"), externalJoin("alice", "bob"), commit("alice", nil, names("bob"), nil)},
		"add": {create("alice"), externalJoin("alice", "bob"),
			newKeyPackage("charlie1"), newKeyPackage("charlie2"), newKeyPackage("charlie3"),
			addProposal("alice", 2), addProposal("bob", 3),
			commit("alice", refs(5, 6), names("bob"), names("charlie1", "charlie2", "charlie3")).withValues(addValue(4)).path(),
			newKeyPackage("charlie4"), newKeyPackage("charlie5"), newKeyPackage("charlie6"),
			addProposal("alice", 8), addProposal("bob", 9),
			commit("alice", refs(11, 12), names("bob", "charlie1", "charlie2"), names("charlie4", "charlie5", "charlie6")).withValues(addValue(10))},
		"remove": {create("alice"), externalJoin("alice", "bob"),
			newKeyPackage("charlie1"), newKeyPackage("charlie2"), newKeyPackage("charlie3"),
			addProposal("alice", 2), addProposal("alice", 3), addProposal("alice", 4),
			commit("alice", refs(5, 6, 7), names("bob"), names("charlie1", "charlie2", "charlie3")),
			removeProposal("alice", "charlie1"), removeProposal("bob", "charlie2"),
			commit("alice", refs(9, 10), names("bob"), nil).withValues(removeValue("charlie3"))},
		"update": {create("alice"), externalJoin("alice", "bob"), updateProposal("bob"), commit("alice", refs(2), names("bob"), nil)},
		"group_context_extensions": {create("alice"), externalJoin("alice", "bob"),
			gceProposal("alice", requiredCaps, noExternalSender), commit("alice", refs(2), names("bob"), nil),
			gceProposal("bob"), commit("alice", refs(4), names("bob"), nil),
			commit("alice", nil, names("bob"), nil).withValues(desc{kind: "groupContextExtensions", exts: []ext{requiredCaps}})},
		"external_psk": {create("alice"), externalJoin("alice", "bob"),
			installPSK("alice", "bob"), installPSK("alice", "bob"), installPSK("alice", "bob"),
			pskProposal("alice", 2), pskProposal("bob", 3),
			commit("alice", refs(5, 6), names("bob"), nil).withValues(pskValue(4)).path(),
			pskProposal("alice", 2), pskProposal("bob", 3),
			commit("alice", refs(8, 9), names("bob"), nil).withValues(pskValue(4))},
		"resumption_psk": {create("alice"), externalJoin("alice", "bob"),
			commit("alice", nil, names("bob"), nil), commit("alice", nil, names("bob"), nil),
			resumptionProposal("alice", 1), resumptionProposal("bob", 2),
			commit("alice", refs(4, 5), names("bob"), nil).withValues(resumptionValue(3)).path(),
			resumptionProposal("alice", 2), resumptionProposal("bob", 3),
			commit("alice", refs(7, 8), names("bob"), nil).withValues(resumptionValue(4)).path()},
		"all_together_alice_proposes": allTogether("alice"),
		"all_together_bob_proposes":   allTogether("bob"),
	},
	"application": {
		"in_order": {create("alice", "bob"),
			protect("alice", "btw1", "hello world 1"), protect("alice", "btw2", "hello world 2"), protect("alice", "btw3", "hello world 3"),
			unprotect("bob", 1), unprotect("bob", 2), unprotect("bob", 3)},
		"out_of_order_within_epoch": {create("alice", "bob"),
			protect("alice", "btw1", "hello world 1"), protect("alice", "btw2", "hello world 2"), protect("alice", "btw3", "hello world 3"),
			unprotect("bob", 3), unprotect("bob", 2), unprotect("bob", 1)},
		"out_of_order_across_epochs": {create("alice", "bob"),
			protect("alice", "btw1", "hello world 1"), protect("alice", "btw2", "hello world 2"),
			commit("alice", nil, names("bob"), nil),
			protect("alice", "btw3", "hello world 3"), protect("alice", "btw4", "hello world 4"),
			unprotect("bob", 5), unprotect("bob", 4), unprotect("bob", 2), unprotect("bob", 1)},
	},
	"branch": {
		"base":            {create("alice", "bob", "charlie", "diana", "eliza"), branch(false, false)},
		"with_extensions": {create("alice", "bob", "charlie", "diana", "eliza"), withExts(branch(false, false), requiredCaps, noExternalSender)},
		"external_tree":   {create("alice", "bob", "charlie", "diana", "eliza"), branch(false, true)},
		"force_path":      {create("alice", "bob", "charlie", "diana", "eliza"), branch(true, false)},
	},
	"reinit": {
		"change_ciphersuite": {create("alice", "bob", "charlie", "diana", "eliza"),
			{action: "reinit", proposer: "alice", committer: "bob", welcomer: "charlie", members: names("diana", "eliza"), changeSuite: true}},
		"change_group_id": {create("alice", "bob", "charlie", "diana", "eliza"),
			{action: "reinit", proposer: "alice", committer: "bob", welcomer: "charlie", members: names("diana", "eliza"), changeGroupID: true}},
		"change_extensions": {create("alice", "bob", "charlie", "diana", "eliza"),
			{action: "reinit", proposer: "alice", committer: "bob", welcomer: "charlie", members: names("diana", "eliza"), exts: []ext{requiredCaps, noExternalSender}}},
		"all_same_actor": {create("alice", "bob", "charlie", "diana", "eliza"),
			{action: "reinit", proposer: "alice", committer: "alice", welcomer: "alice", members: names("bob", "charlie", "diana", "eliza"), changeGroupID: true}},
		"external_tree": {create("alice", "bob", "charlie", "diana", "eliza"),
			{action: "reinit", proposer: "alice", committer: "bob", welcomer: "charlie", members: names("diana", "eliza"), changeGroupID: true, externalTree: true}},
		"force_path": {create("alice", "bob", "charlie", "diana", "eliza"),
			{action: "reinit", proposer: "alice", committer: "bob", welcomer: "charlie", members: names("diana", "eliza"), changeGroupID: true, forcePath: true}},
	},
	"external_proposals": {
		"joiner_signed_add": {create("alice"), {action: "newMemberAddProposal", actor: "alice", joiner: "bob"},
			commit("alice", refs(1), nil, names("bob"))},
		"external_add": {create("alice"), externalJoin("alice", "bob"),
			addSigner("alice", "ds"), commit("alice", refs(2), names("bob"), nil),
			newKeyPackage("charlie"), signerProposal("ds", "alice", desc{kind: "add", keyPackage: 4}),
			commit("alice", refs(5), names("bob"), names("charlie"))},
		"external_remove": {create("alice"), externalJoin("alice", "bob"), externalJoin("alice", "charlie", "bob"),
			addSigner("alice", "ds"), commit("alice", refs(3), names("bob", "charlie"), nil),
			signerProposal("ds", "alice", desc{kind: "remove", removed: "bob"}),
			commit("alice", refs(5), names("charlie"), nil)},
		"external_psk": {create("alice"), externalJoin("alice", "bob"), externalJoin("alice", "charlie", "bob"),
			installPSK("alice", "bob", "charlie"),
			addSigner("alice", "ds"), commit("alice", refs(4), names("bob", "charlie"), nil),
			signerProposal("ds", "alice", desc{kind: "externalPSK", psk: 3}),
			commit("alice", refs(6), names("bob", "charlie"), nil)},
		"resumption_psk": {create("alice"), externalJoin("alice", "bob"), externalJoin("alice", "charlie", "bob"),
			addSigner("alice", "ds"), commit("alice", refs(3), names("bob", "charlie"), nil),
			signerProposal("ds", "alice", desc{kind: "resumptionPSK", epoch: 2}),
			commit("alice", refs(5), names("bob", "charlie"), nil)},
		"group_context_extensions": {create("alice"), externalJoin("alice", "bob"), externalJoin("alice", "charlie", "bob"),
			addSigner("alice", "ds"), commit("alice", refs(3), names("bob", "charlie"), nil),
			signerProposal("ds", "alice", desc{kind: "groupContextExtensions", exts: []ext{requiredCaps}}),
			commit("alice", refs(5), names("bob", "charlie"), nil)},
		"multiple_external": {create("alice"), externalJoin("alice", "bob"), externalJoin("alice", "charlie", "bob"),
			installPSK("alice", "bob", "charlie"), installPSK("alice", "bob", "charlie"),
			addSigner("alice", "ds1"), commit("alice", refs(5), names("bob", "charlie"), nil),
			addSigner("alice", "ds2"), commit("alice", refs(7), names("bob", "charlie"), nil),
			signerProposal("ds1", "alice", desc{kind: "externalPSK", psk: 3}),
			signerProposal("ds1", "alice", desc{kind: "externalPSK", psk: 4}),
			commit("alice", refs(9, 10), names("bob", "charlie"), nil)},
		"external_reinit": {create("alice"), externalJoin("alice", "bob"), externalJoin("alice", "charlie", "bob"),
			addSigner("alice", "ds"), commit("alice", refs(3), names("bob", "charlie"), nil),
			signerProposal("ds", "alice", desc{kind: "reinit", changeGroupID: true, changeSuite: true, exts: []ext{requiredCaps}}),
			{action: "reinit", externalReinitProposal: 5, committer: "alice", welcomer: "bob", members: names("charlie"), forcePath: true}},
	},
	"generate_handle_commit": {
		"remove_from_self_and_others": append(fourAlices(),
			removeProposal("alice1", "alice4"), removeProposal("alice2", "alice3"),
			commit("alice1", refs(8, 9), names("alice2"), nil)),
		"update_from_self_and_others": append(fourAlices(),
			updateProposal("alice2"), commit("alice1", refs(8), names("alice2", "alice3", "alice4"), nil)),
		// The config lists extensions of types that are not uint16 values;
		// the scenario is kept with valid ones.
		"context_extensions_from_self_and_others": append(fourAlices(),
			gceProposal("alice1", requiredCaps, noExternalSender), commit("alice1", refs(8), names("alice2", "alice3", "alice4"), nil),
			gceProposal("alice2"), commit("alice1", refs(10), names("alice2", "alice3", "alice4"), nil)),
		"external_psk_self_and_others": append(fourAlices(),
			installPSK("alice1", "alice2", "alice3", "alice4"), installPSK("alice1", "alice2", "alice3", "alice4"),
			pskProposal("alice1", 8), pskProposal("alice2", 9),
			commit("alice1", refs(10, 11), names("alice2", "alice3", "alice4"), nil)),
		"resumption_psk_self_and_others": append(fourAlices(),
			commit("alice1", nil, names("alice2", "alice3", "alice4"), nil),
			resumptionProposal("alice1", 1), commit("alice1", refs(9), names("alice2", "alice3", "alice4"), nil),
			resumptionProposal("alice2", 2), commit("alice1", refs(11), names("alice2", "alice3", "alice4"), nil)),
	},
}

func allTogether(proposer string) []step {
	s := []step{create("alice"), externalJoin("alice", "bob"), newKeyPackage("charlie1"), newKeyPackage("charlie2"),
		addProposal("alice", 2), addProposal("alice", 3),
		commit("alice", refs(4, 5), names("bob"), names("charlie1", "charlie2")),
		installPSK("alice", "bob"), installPSK("alice", "bob"),
		newKeyPackage("charlie3"), addProposal(proposer, 9), removeProposal(proposer, "charlie1"),
		gceProposal(proposer, requiredCaps, noExternalSender), pskProposal(proposer, 7), resumptionProposal(proposer, 1)}
	byRef := refs(10, 11, 12, 13, 14)
	if proposer == "bob" {
		s = append(s, updateProposal("bob"))
		byRef = append(byRef, 15)
	}
	kp := len(s)
	s = append(s, newKeyPackage("charlie4"))
	return append(s, commit("alice", byRef, names("bob"), nil).withValues(
		addValue(kp), removeValue("charlie2"), pskValue(8), resumptionValue(2)))
}

func fourAlices() []step {
	return []step{create("alice1"), newKeyPackage("alice2"), newKeyPackage("alice3"), newKeyPackage("alice4"),
		addProposal("alice1", 1), addProposal("alice1", 2), addProposal("alice1", 3),
		commit("alice1", refs(4, 5, 6), nil, names("alice2", "alice3", "alice4"))}
}

func branch(forcePath, externalTree bool) step {
	return step{action: "branch", actor: "alice", members: names("bob", "charlie", "diana", "eliza"), forcePath: forcePath, externalTree: externalTree}
}

func withExts(s step, exts ...ext) step { s.exts = exts; return s }

func addSigner(actor, signer string) step {
	return step{action: "addExternalSigner", actor: actor, signer: signer}
}

func signerProposal(signer, member string, d desc) step {
	return step{action: "externalSignerProposal", actor: signer, member: member, description: &d}
}
