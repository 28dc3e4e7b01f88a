package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// This file implements the groups that resume an earlier one (RFC 9420,
// §11.2 and §11.3): reinitialization and subgroup branching, linked to
// the old group by a resumption PSK; and the extension points of §13.

// ErrReInitialized is returned by operations that send to a group whose
// current epoch was started by a ReInit commit: such a group is replaced
// by a new one (RFC 9420, §11.2) and sends nothing more.
var ErrReInitialized = errors.New("mls: the group was reinitialized; use the new group")

// canSend reports why this member may not send to the group, if it may not.
func (g *Group) canSend() error {
	if !g.active {
		return ErrInactive
	}
	if g.reinit != nil {
		return ErrReInitialized
	}
	return nil
}

// PendingReInit returns the ReInit proposal of the commit that started the
// current epoch, or nil. When it is set, a member re-creates the group
// with [Group.ReInit] and the others join the new group with the Welcome,
// passing this group as [JoinOptions.PreviousGroup]. The caller must not
// modify it.
func (g *Group) PendingReInit() *ReInitProposal { return g.reinit }

// ResumptionPSK returns the resumption_psk of the given epoch of this group
// (RFC 9420, §8.6): the current epoch's, or one of the
// [Config.ResumptionPSKEpochs] before it. An application hands it to a
// related group through its [PSKStore]. It must be kept secret; the
// caller must not modify it.
func (g *Group) ResumptionPSK(epoch uint64) ([]byte, error) {
	if epoch == g.state.ctx.Epoch {
		return g.state.secrets.ResumptionPSK(), nil
	}
	for _, r := range g.resumption {
		if r.epoch == epoch {
			return r.secret, nil
		}
	}
	return nil, fmt.Errorf("%w: resumption PSK of epoch %d", ErrNotFound, epoch)
}

// ProposeReInit sends a proposal to re-create the group with the version,
// cipher suite, group ID and extensions of r (RFC 9420, §12.1.5). A zero
// Version means MLS10 and a nil GroupID a fresh random one. Once a commit
// of it is merged, the group sends nothing more: see [Group.ReInit].
func (g *Group) ProposeReInit(r ReInitProposal) (*MLSMessage, error) {
	return g.propose(&Proposal{Type: ProposalTypeReInit, ReInit: fillReInit(r)}, nil)
}

// NewReInitProposal returns a ReInit proposal with the defaults of
// [Group.ProposeReInit] filled in, to commit by value with
// [CommitOptions.Proposals].
func NewReInitProposal(r ReInitProposal) Proposal {
	return Proposal{Type: ProposalTypeReInit, ReInit: fillReInit(r)}
}

func fillReInit(r ReInitProposal) *ReInitProposal {
	if r.Version == 0 {
		r.Version = MLS10
	}
	if r.GroupID == nil {
		r.GroupID = make([]byte, 32)
		rand.Read(r.GroupID)
	}
	return &r
}

// ReInitOptions are the inputs of [Group.ReInit].
type ReInitOptions struct {
	// KeyPackages are those of every other member of the old group, in the
	// new cipher suite.
	KeyPackages []*KeyPackage
	// Credential and SignatureKey are the caller's in the new group. The
	// key must be of the new cipher suite. They default to the caller's
	// current ones when the cipher suite does not change.
	Credential   *Credential
	SignatureKey *SignaturePrivateKey
	// Capabilities, ExtensionTypes, ProposalTypes and LeafExtensions are
	// as in [GroupOptions], for the caller's leaf in the new group.
	Capabilities   *Capabilities
	ExtensionTypes []ExtensionType
	ProposalTypes  []ProposalType
	LeafExtensions []Extension
	// Config is the new group's configuration; nil keeps the old group's.
	Config *Config
	// RatchetTreeOutOfBand leaves the ratchet tree out of the Welcome.
	RatchetTreeOutOfBand bool
}

// ReInit creates the group that replaces this one after a ReInit commit
// was merged (RFC 9420, §11.2): a group with the parameters of
// [Group.PendingReInit], whose first commit adds every other member of this
// group (from opts.KeyPackages) and injects this group's resumption PSK
// with usage reinit. It returns the new group, in epoch 1, and the Welcome
// to send to the other members, who join with [Join] and
// [JoinOptions.PreviousGroup] set to their copy of this group.
func (g *Group) ReInit(opts *ReInitOptions) (*Group, *MLSMessage, error) {
	if !g.active {
		return nil, nil, ErrInactive
	}
	if err := g.needTree(); err != nil {
		return nil, nil, err
	}
	r := g.reinit
	if r == nil {
		return nil, nil, errors.New("mls: the group has no pending ReInit")
	}
	if opts == nil {
		opts = &ReInitOptions{}
	}
	cred, sig := opts.Credential, opts.SignatureKey
	if cred == nil {
		own := g.state.tree.Leaf(g.state.priv.LeafIndex()).Credential
		cred = &own
	}
	if sig == nil {
		if r.CipherSuite != g.cs {
			return nil, nil, fmt.Errorf("mls: ReInit to cipher suite %v needs a signature key of that suite", r.CipherSuite)
		}
		sig = g.sigPriv
	}
	if r.Version != MLS10 {
		return nil, nil, fmt.Errorf("%w: ReInit to version %d", ErrUnsupported, r.Version)
	}
	// Every other member must be carried over (§12.4.3.1).
	me := g.state.priv.LeafIndex()
	for i, l := range g.state.tree.Leaves() {
		if i == me {
			continue
		}
		if !slices.ContainsFunc(opts.KeyPackages, func(kp *KeyPackage) bool { return sameIdentity(&kp.LeafNode.Credential, &l.Credential) }) {
			return nil, nil, fmt.Errorf("%w: no KeyPackage for member %d", ErrNotFound, i)
		}
	}
	gopts := &GroupOptions{
		GroupID:        r.GroupID,
		Extensions:     r.Extensions,
		Capabilities:   opts.Capabilities,
		ExtensionTypes: opts.ExtensionTypes,
		ProposalTypes:  opts.ProposalTypes,
		LeafExtensions: opts.LeafExtensions,
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = &g.cfg
	}
	return g.resume(r.CipherSuite, *cred, sig, gopts, cfg, opts.KeyPackages, keyschedule.ResumptionPSKUsageReInit, opts.RatchetTreeOutOfBand)
}

// BranchOptions are the inputs of [Group.Branch].
type BranchOptions struct {
	// KeyPackages are those of the members to bring into the subgroup;
	// each must hold the identity of a member of this group.
	KeyPackages []*KeyPackage
	// GroupID is the subgroup's ID; nil selects 32 random bytes.
	GroupID []byte
	// Extensions are the subgroup's extensions; nil keeps this group's.
	Extensions []Extension
	// Config is the subgroup's configuration; nil keeps this group's.
	Config *Config
	// RatchetTreeOutOfBand leaves the ratchet tree out of the Welcome.
	RatchetTreeOutOfBand bool
}

// Branch creates a subgroup of some of this group's members with the same
// version and cipher suite (RFC 9420, §11.3): its first commit adds the
// members of opts.KeyPackages and injects this group's current resumption
// PSK with usage branch. The caller keeps its credential, signature key,
// capabilities and leaf extensions. It returns the subgroup, in epoch 1,
// and the Welcome for the others, who join with [Join] and
// [JoinOptions.PreviousGroup] set to their copy of this group.
func (g *Group) Branch(opts *BranchOptions) (*Group, *MLSMessage, error) {
	if err := g.canSend(); err != nil {
		return nil, nil, err
	}
	if err := g.needTree(); err != nil {
		return nil, nil, err
	}
	if opts == nil {
		opts = &BranchOptions{}
	}
	for _, kp := range opts.KeyPackages {
		if len(g.state.tree.FindIdentity(&kp.LeafNode.Credential)) == 0 {
			return nil, nil, invalid("11.3", "KeyPackage of a client that is not a member")
		}
	}
	own := g.state.tree.Leaf(g.state.priv.LeafIndex())
	caps := own.Capabilities
	exts := opts.Extensions
	if exts == nil {
		exts = g.state.extensions
	}
	gopts := &GroupOptions{
		GroupID:        opts.GroupID,
		Extensions:     exts,
		Capabilities:   &caps,
		LeafExtensions: own.Extensions,
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = &g.cfg
	}
	return g.resume(g.cs, own.Credential, g.sigPriv, gopts, cfg, opts.KeyPackages, keyschedule.ResumptionPSKUsageBranch, opts.RatchetTreeOutOfBand)
}

// resume creates a group linked to g by a resumption PSK of g's current
// epoch with the given usage, adds the owners of kps in its first commit,
// and merges it.
func (g *Group) resume(cs CipherSuite, cred Credential, sig *SignaturePrivateKey, gopts *GroupOptions, cfg *Config, kps []*KeyPackage, usage keyschedule.ResumptionPSKUsage, outOfBand bool) (*Group, *MLSMessage, error) {
	// The new group finds the old group's PSK through a store that knows
	// it, only for its first commit.
	linked := *cfg
	linked.PSKs = &groupPSKStore{g: g, next: cfg.PSKs}
	ng, err := NewGroup(cs, cred, sig, gopts, &linked)
	if err != nil {
		return nil, nil, err
	}
	id := PreSharedKeyID{
		PSKType:    keyschedule.PSKTypeResumption,
		Usage:      usage,
		PSKGroupID: g.state.ctx.GroupID,
		PSKEpoch:   g.state.ctx.Epoch,
		PSKNonce:   keyschedule.NewPSKNonce(cs),
	}
	pc, err := ng.Commit(&CommitOptions{Add: kps, PSKs: []PreSharedKeyID{id}, RatchetTreeOutOfBand: outOfBand, link: usage})
	if err != nil {
		return nil, nil, err
	}
	if err := ng.MergePendingCommit(pc); err != nil {
		return nil, nil, err
	}
	ng.cfg.PSKs = cfg.PSKs
	return ng, pc.Welcome, nil
}

// groupPSKStore answers for the resumption PSKs of group g and passes
// every other request to next.
type groupPSKStore struct {
	g    *Group
	next PSKStore
}

func (s *groupPSKStore) ExternalPSK(id []byte) ([]byte, error) {
	if s.next == nil {
		return nil, ErrNotFound
	}
	return s.next.ExternalPSK(id)
}

func (s *groupPSKStore) ResumptionPSK(groupID []byte, epoch uint64) ([]byte, error) {
	if bytes.Equal(groupID, s.g.state.ctx.GroupID) {
		if psk, err := s.g.ResumptionPSK(epoch); err == nil {
			return psk, nil
		}
	}
	if s.next == nil {
		return nil, ErrNotFound
	}
	return s.next.ResumptionPSK(groupID, epoch)
}

// sameIdentity reports whether two credentials present the same identity:
// the same type and basic identity, end-entity certificate, or data.
func sameIdentity(a, b *Credential) bool {
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case CredentialBasic:
		return bytes.Equal(a.Identity, b.Identity)
	case CredentialX509:
		return len(a.Certificates) > 0 && len(b.Certificates) > 0 && bytes.Equal(a.Certificates[0], b.Certificates[0])
	}
	return bytes.Equal(a.Data, b.Data)
}

// checkResumedWelcome checks a Welcome whose PSKs include a resumption PSK
// of usage reinit or branch (RFC 9420, §12.4.3.1): that it is the only
// one, that the new group is in epoch 1, and that it matches the ReInit of
// the previous group, or is a subgroup of it. prev is the previous group,
// which must be the one the PSK names.
func checkResumedWelcome(psks []PreSharedKeyID, ctx *GroupContext, tree *treekem.Tree, prev *Group) error {
	var link *PreSharedKeyID
	for i := range psks {
		id := &psks[i]
		if id.PSKType != keyschedule.PSKTypeResumption || id.Usage == keyschedule.ResumptionPSKUsageApplication {
			continue
		}
		if link != nil {
			return invalid("12.4.3.1", "several reinit or branch PSKs")
		}
		link = id
	}
	if link == nil {
		return nil
	}
	if ctx.Epoch != 1 {
		return invalid("12.4.3.1", "group resumed with a %d PSK is in epoch %d, not 1", link.Usage, ctx.Epoch)
	}
	if prev == nil || !bytes.Equal(prev.state.ctx.GroupID, link.PSKGroupID) {
		return fmt.Errorf("%w: the previous group, needed to check a resumed group (JoinOptions.PreviousGroup)", ErrNotFound)
	}
	if err := prev.needTree(); err != nil {
		return err
	}
	switch link.Usage {
	case keyschedule.ResumptionPSKUsageReInit:
		r := prev.reinit
		if r == nil || link.PSKEpoch != prev.state.ctx.Epoch {
			return invalid("11.2", "the previous group's last commit was not a ReInit")
		}
		if !bytes.Equal(r.GroupID, ctx.GroupID) || uint16(r.Version) != uint16(ctx.Version) || r.CipherSuite != ctx.CipherSuite ||
			!extensionsEqual(r.Extensions, ctx.Extensions) {
			return invalid("11.2", "the new group does not match the ReInit proposal")
		}
		for i, l := range prev.state.tree.Leaves() {
			if len(tree.FindIdentity(&l.Credential)) == 0 {
				return invalid("11.2", "member %d of the previous group is not in the new group", i)
			}
		}
	case keyschedule.ResumptionPSKUsageBranch:
		if uint16(prev.state.ctx.Version) != uint16(ctx.Version) || prev.cs != ctx.CipherSuite {
			return invalid("11.3", "subgroup version or cipher suite differs from the previous group's")
		}
		for i, l := range tree.Leaves() {
			if len(prev.state.tree.FindIdentity(&l.Credential)) == 0 {
				return invalid("11.3", "member %d of the subgroup is not a member of the previous group", i)
			}
		}
	}
	return nil
}

func extensionsEqual(a, b []Extension) bool {
	return slices.EqualFunc(a, b, func(x, y Extension) bool { return x.Type == y.Type && bytes.Equal(x.Data, y.Data) })
}

// ApplicationID returns the application_id extension of the leaf node of
// the member at leaf (RFC 9420, §5.3.3), which an application sets with
// [KeyPackageOptions.LeafExtensions] to identify a client within its
// identity. ok is false if the leaf is blank or has none.
func (g *Group) ApplicationID(leaf LeafIndex) (id []byte, ok bool) {
	l := g.senderLeaf(g.state.tree, g.state.framer, leaf)
	if l == nil {
		return nil, false
	}
	return findExtension(l.Extensions, ExtensionApplicationID)
}

// ProposeCustom sends a proposal of a type RFC 9420 does not define, with
// an opaque body (RFC 9420, §13.2). Every member must list the type in its
// capabilities ([KeyPackageOptions.ProposalTypes]); otherwise it fails
// with an error matching [ErrUnsupported]. Receivers see it in
// [Processed.Proposal] and, once committed, in [StagedCommit.Proposals];
// [Config.ProposalPolicy] decides whether it is valid. A custom proposal
// requires a path in the commit that covers it.
func (g *Group) ProposeCustom(t ProposalType, body []byte) (*MLSMessage, error) {
	if t.IsDefault() || t == 0 {
		return nil, fmt.Errorf("%w: proposal type %d is not a custom type", ErrUnsupported, t)
	}
	if body == nil {
		body = []byte{}
	}
	return g.propose(&Proposal{Type: t, Custom: body}, nil)
}
