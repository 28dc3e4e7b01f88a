package mls

import (
	"errors"
	"fmt"

	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// This file implements the proposal cache of an epoch (RFC 9420, §12.1,
// §12.4): bounded, looked up by reference in O(1), and the choice of the
// cached proposals a commit of this member covers, which leaves out, with
// a reason, those that are invalid or that the application's policy does
// not accept.

// DefaultMaxCachedProposals is the default of [Config.MaxCachedProposals].
const DefaultMaxCachedProposals = 1024

var (
	// ErrProposalCacheFull means the group already holds
	// [Config.MaxCachedProposals] proposals for the current epoch: the
	// proposal was refused, and nothing changed. Commit to empty the cache.
	ErrProposalCacheFull = errors.New("mls: proposal cache full")
	// ErrNonMemberProposal means a proposal from a non-member (an external
	// sender or a new_member_proposal Add, RFC 9420, §12.1.8) was left
	// out of a commit because [Config.AcceptNonMemberProposal] did not
	// accept it.
	ErrNonMemberProposal = errors.New("mls: proposal from a non-member not accepted")
	// ErrPendingProposals means this member holds valid proposals of the
	// current epoch and must commit them (and merge the commit) before
	// sending application data (RFC 9420, §12.4).
	ErrPendingProposals = errors.New("mls: valid proposals pending; commit before sending application data")
)

func (c *Config) maxCachedProposals() int {
	if c.MaxCachedProposals <= 0 {
		return DefaultMaxCachedProposals
	}
	return c.MaxCachedProposals
}

// DroppedProposal is a cached proposal that [Group.Commit] left out of the
// commit, and why. The proposal stays cached: another member may still
// commit it, and it disappears with the epoch.
type DroppedProposal struct {
	// Ref is the proposal's reference, Proposal the proposal (the caller
	// must not modify it) and Sender who sent it.
	Ref      ProposalRef
	Proposal *Proposal
	Sender   Sender
	// Err says why: it matches [ErrNonMemberProposal] for a non-member's
	// proposal the policy did not accept, and is a [ValidationError] (or
	// matches another sentinel of this package) for an invalid one.
	Err error
}

// findProposal returns the cached proposal with reference ref. The index
// is rebuilt when it does not cover the cache (after LoadGroup, which
// fills the slice).
func (st *epochState) findProposal(ref []byte) (cachedProposal, bool) {
	if st.proposalIndex == nil || len(st.proposalIndex) != len(st.proposals) {
		st.proposalIndex = make(map[string]int, len(st.proposals))
		for i, c := range st.proposals {
			st.proposalIndex[string(c.ref)] = i
		}
	}
	i, ok := st.proposalIndex[string(ref)]
	if !ok {
		return cachedProposal{}, false
	}
	return st.proposals[i], true
}

// addProposal caches c unless a proposal with the same reference is
// already cached. It fails with ErrProposalCacheFull, changing nothing,
// when the cache holds max proposals.
func (st *epochState) addProposal(c cachedProposal, max int) error {
	if _, ok := st.findProposal(c.ref); ok {
		return nil
	}
	// mutants:skip invariant: every caller checked the room first with checkCacheRoom, before any state changed
	if len(st.proposals) >= max {
		return fmt.Errorf("%w: %d proposals", ErrProposalCacheFull, len(st.proposals))
	}
	st.proposals = append(st.proposals, c)
	st.proposalIndex[string(c.ref)] = len(st.proposals) - 1
	return nil
}

// checkCacheRoom returns ErrProposalCacheFull if a proposal with reference
// ref would not fit in the cache.
func (st *epochState) checkCacheRoom(ref []byte, max int) error {
	if _, ok := st.findProposal(ref); ok || len(st.proposals) < max {
		return nil
	}
	return fmt.Errorf("%w: %d proposals", ErrProposalCacheFull, len(st.proposals))
}

// pendingProposals returns how many valid proposals of the current epoch
// this member holds (RFC 9420, §12.4): the cached proposals that pass the
// checks of a commit on their own, the application's policy for
// non-members included. Its own Updates do not count: they change no
// membership, and a commit of its own would replace them with its path.
func (g *Group) pendingProposals() int {
	st := g.state
	if len(st.proposals) == 0 {
		return 0
	}
	self := Sender{Type: SenderTypeMember, Index: uint32(st.priv.LeafIndex())}
	addOpts, optsErr := g.validateOptions(st.ctx.GroupID, st.extensions, true)
	n := 0
	for _, c := range st.proposals {
		if c.sender == self && c.proposal.Type == ProposalTypeUpdate {
			continue
		}
		if g.cachedProposalUsable(st, c, 0, addOpts, optsErr) == nil {
			n++
		}
	}
	return n
}

// isNonMember reports whether s is not a member of the group (RFC 9420,
// §12.1.8).
func isNonMember(s Sender) bool {
	return s.Type == SenderTypeExternal || s.Type == SenderTypeNewMemberProposal
}

// commitConflicts tracks what a commit's proposal list holds so far, to
// find a cached proposal that cannot join it (RFC 9420, §12.2).
type commitConflicts struct {
	self    LeafIndex
	addKeys map[string]bool
	touched map[LeafIndex]bool
	psks    map[string]bool
	gce     bool
}

func newCommitConflicts(self LeafIndex) *commitConflicts {
	return &commitConflicts{self: self, addKeys: map[string]bool{}, touched: map[LeafIndex]bool{}, psks: map[string]bool{}}
}

// add records p, sent by sender, and returns an error if it conflicts with
// what was recorded before.
func (cc *commitConflicts) add(p *Proposal, sender Sender) error {
	switch p.Type {
	case ProposalTypeAdd:
		key := string(p.Add.KeyPackage.LeafNode.SignatureKey)
		// mutants:skip fast path: Commit's fallback drops the same proposals, at one apply each
		if cc.addKeys[key] {
			return invalid("12.2", "two Adds for the same client")
		}
		cc.addKeys[key] = true
	case ProposalTypeUpdate:
		l := LeafIndex(sender.Index)
		// mutants:skip fast path: Commit's fallback drops the same proposals, at one apply each
		if cc.touched[l] {
			return invalid("12.2", "several Update or Remove proposals for leaf %d", l)
		}
		cc.touched[l] = true
	case ProposalTypeRemove:
		l := p.Remove.Removed
		// mutants:skip fast path: Commit's fallback drops the same proposals, at one apply each
		if l == cc.self {
			return invalid("12.2", "commit removes the committer")
		}
		// mutants:skip fast path: Commit's fallback drops the same proposals, at one apply each
		if cc.touched[l] {
			return invalid("12.2", "several Update or Remove proposals for leaf %d", l)
		}
		cc.touched[l] = true
	case ProposalTypePreSharedKey:
		id := p.PreSharedKey.PSK
		id.PSKNonce = nil
		enc, err := id.Bytes()
		if err != nil {
			return malformed("psk id", err)
		}
		// mutants:skip fast path: Commit's fallback drops the same proposals, at one apply each
		if cc.psks[string(enc)] {
			return invalid("12.2", "the same PSK twice")
		}
		cc.psks[string(enc)] = true
	case ProposalTypeGroupContextExtensions:
		// mutants:skip fast path: Commit's fallback drops the same proposals, at one apply each
		if cc.gce {
			return invalid("12.2", "several GroupContextExtensions proposals")
		}
		cc.gce = true
	}
	return nil
}

// selectCached chooses the cached proposals a commit of this member covers
// besides byValue, its own proposals sent by value (RFC 9420, §12.4.1).
// It leaves out this member's own Updates (the commit's path supersedes
// them) and, reporting each in dropped, every proposal that is invalid now
// (an expired KeyPackage, a Remove of a leaf already gone, a second Add of
// the same client, ...), every non-member proposal the application did not
// accept, and a ReInit that cannot be committed alone.
func (g *Group) selectCached(st *epochState, self Sender, byValue []*Proposal, link keyschedule.ResumptionPSKUsage) (chosen []cachedProposal, dropped []DroppedProposal) {
	me := LeafIndex(self.Index)
	cc := newCommitConflicts(me)
	for _, p := range byValue {
		_ = cc.add(p, self) // the caller's own list is checked as a whole later
	}
	// A ReInit must be committed alone; other proposals take precedence,
	// and the ReInit can be sent again (§12.2).
	others := len(byValue) > 0
	for _, c := range st.proposals {
		if c.proposal.Type != ProposalTypeReInit && (c.sender != self || c.proposal.Type != ProposalTypeUpdate) {
			others = true
		}
	}
	addOpts, optsErr := g.validateOptions(st.ctx.GroupID, st.extensions, true)
	reinit := false
	for _, c := range st.proposals {
		if c.sender == self && c.proposal.Type == ProposalTypeUpdate {
			continue // our own Update is superseded by the path
		}
		err := g.cachedProposalUsable(st, c, link, addOpts, optsErr)
		if err == nil && c.proposal.Type == ProposalTypeReInit && (others || reinit) {
			err = invalid("12.2", "ReInit together with other proposals")
		}
		if err == nil {
			err = cc.add(c.proposal, c.sender)
		}
		if err != nil {
			dropped = append(dropped, DroppedProposal{Ref: c.ref, Proposal: c.proposal, Sender: c.sender, Err: err})
			continue
		}
		if c.proposal.Type == ProposalTypeReInit {
			reinit = true
		}
		chosen = append(chosen, c)
	}
	return chosen, dropped
}

// cachedProposalUsable runs the checks a cached proposal must pass, on its
// own, to be committed now: the application's policy for non-members, and
// the checks of a commit's proposals (§12.1), lifetimes included.
func (g *Group) cachedProposalUsable(st *epochState, c cachedProposal, link keyschedule.ResumptionPSKUsage, addOpts *treekem.ValidateOptions, optsErr error) error {
	if isNonMember(c.sender) {
		accept := g.cfg.AcceptNonMemberProposal
		if accept == nil {
			return fmt.Errorf("%w: no policy accepts proposals from non-members", ErrNonMemberProposal)
		}
		if err := accept(c.proposal, c.sender); err != nil {
			return fmt.Errorf("%w: %w", ErrNonMemberProposal, err)
		}
	}
	// mutants:skip the proposal passed these checks when it was cached; run again for a policy that changed since
	if err := g.checkProposalInCommit(st, st.tree, c.proposal, c.sender, link); err != nil {
		return err
	}
	switch c.proposal.Type {
	case ProposalTypePreSharedKey:
		// A PSK this member does not hold cannot go into its key
		// schedule (§8.4).
		if _, err := g.lookupPSK(&c.proposal.PreSharedKey.PSK); err != nil {
			return err
		}
	case ProposalTypeAdd:
		if optsErr != nil {
			return optsErr
		}
		leaf := c.proposal.Add.KeyPackage.LeafNode
		if err := st.tree.ValidateLeafNode(&leaf, treekem.SourceKeyPackage, 0, addOpts); err != nil {
			return &ValidationError{Section: "12.1.1", Err: err}
		}
	}
	return nil
}
