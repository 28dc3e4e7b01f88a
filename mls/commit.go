package mls

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// WireFormatPolicy says how this member sends handshake messages, and
// which wire formats it accepts for members' handshake messages.
type WireFormatPolicy uint8

// Wire format policies.
const (
	// HandshakePublic sends proposals and commits as PublicMessage, so the
	// delivery service can see and order them (the default). Members'
	// handshake messages are accepted in either wire format.
	HandshakePublic WireFormatPolicy = iota
	// HandshakePrivate sends proposals and commits as PrivateMessage, which
	// hides even the sender from the delivery service (as sealed sender
	// requires), and refuses a member's proposal or commit that arrives as
	// a PublicMessage with [ErrWireFormatPolicy]. Non-members' messages
	// (external senders, new members, external commits) can only be
	// PublicMessages and are still accepted.
	HandshakePrivate
	// HandshakePublicOnly sends as HandshakePublic does and refuses a
	// proposal or commit that arrives as a PrivateMessage with
	// [ErrWireFormatPolicy], for groups whose delivery service must see
	// every handshake message.
	HandshakePublicOnly
)

// ErrWireFormatPolicy means a handshake message arrived in a wire format
// the group's [Config.Handshake] policy refuses. It comes wrapped in a
// [ValidationError].
var ErrWireFormatPolicy = errors.New("mls: handshake wire format refused by the group's policy")

// checkWireFormat applies the group's wire format policy to a received
// message of the current epoch (RFC 9420, §6: which wire format handshake
// messages use is the application's choice, and it must hold on input).
func (g *Group) checkWireFormat(msg *MLSMessage) error {
	switch {
	case g.cfg.Handshake == HandshakePrivate && msg.WireFormat == WireFormatPublicMessage &&
		msg.PublicMessage.Content.Sender.Type == SenderTypeMember:
		return &ValidationError{Section: "6", Err: fmt.Errorf("%w: member's handshake as PublicMessage in a group using PrivateMessage", ErrWireFormatPolicy)}
	case g.cfg.Handshake == HandshakePublicOnly && msg.WireFormat == WireFormatPrivateMessage &&
		msg.PrivateMessage.ContentType != ContentTypeApplication:
		return &ValidationError{Section: "6", Err: fmt.Errorf("%w: handshake as PrivateMessage in a group using PublicMessage", ErrWireFormatPolicy)}
	}
	return nil
}

// framedContent returns a FramedContent of the current epoch sent by this
// member.
func (g *Group) framedContent(ad []byte) FramedContent {
	return FramedContent{
		GroupID:           g.state.ctx.GroupID,
		Epoch:             g.state.ctx.Epoch,
		Sender:            Sender{Type: SenderTypeMember, Index: uint32(g.state.priv.LeafIndex())},
		AuthenticatedData: ad,
	}
}

// handshakeWireFormat returns the wire format for handshake messages.
func (g *Group) handshakeWireFormat() WireFormat {
	if g.cfg.Handshake == HandshakePrivate {
		return WireFormatPrivateMessage
	}
	return WireFormatPublicMessage
}

// padding returns the padding for a content of n bytes (RFC 9420, §6.3).
func (g *Group) padding(n int) int {
	block := g.cfg.PaddingBlock
	if block <= 0 {
		block = DefaultPaddingBlock
	}
	if block == 1 {
		return 0
	}
	return (block - n%block) % block
}

// protect frames a signed AuthenticatedContent of the current epoch.
func (g *Group) protect(ac *AuthenticatedContent) (*MLSMessage, error) {
	msg := &MLSMessage{Version: MLS10, WireFormat: ac.WireFormat}
	var err error
	if ac.WireFormat == WireFormatPublicMessage {
		msg.PublicMessage, err = g.state.framer.protectPublic(ac)
	} else {
		msg.PrivateMessage, err = g.state.framer.protectPrivate(ac, g.padding)
	}
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// EncryptApplication encrypts an application message to the group as a
// PrivateMessage (RFC 9420, §6.3), with authenticatedData sent in the clear
// but authenticated. It consumes one key of this member's application
// ratchet, so the group's state must be persisted afterwards.
//
// A member holding valid proposals of the current epoch must commit them
// before sending application data (RFC 9420, §12.4): EncryptApplication
// then fails with [ErrPendingProposals]. Proposals a commit of this member
// would leave out (see [PendingCommit.Dropped]) do not count.
func (g *Group) EncryptApplication(plaintext, authenticatedData []byte) (*MLSMessage, error) {
	if err := g.canSend(); err != nil {
		return nil, err
	}
	if n := g.pendingProposals(); n > 0 {
		return nil, fmt.Errorf("%w: %d of epoch %d", ErrPendingProposals, n, g.state.ctx.Epoch)
	}
	c := g.framedContent(authenticatedData)
	c.ContentType = ContentTypeApplication
	c.ApplicationData = plaintext
	ac := &AuthenticatedContent{WireFormat: WireFormatPrivateMessage, Content: c}
	if err := signContent(g.cs, g.sigPriv, ac, g.state.ctxBytes); err != nil {
		return nil, err
	}
	return g.protect(ac)
}

// propose frames, signs and caches a proposal of this member.
func (g *Group) propose(p *Proposal, ad []byte) (*MLSMessage, error) {
	if err := g.canSend(); err != nil {
		return nil, err
	}
	if err := g.needTree(); err != nil {
		return nil, err
	}
	st := g.state
	me := Sender{Type: SenderTypeMember, Index: uint32(st.priv.LeafIndex())}
	if err := g.checkProposal(st, st.tree, p, me); err != nil {
		return nil, err
	}
	c := g.framedContent(ad)
	c.ContentType = ContentTypeProposal
	c.Proposal = p
	ac := &AuthenticatedContent{WireFormat: g.handshakeWireFormat(), Content: c}
	if err := signContent(g.cs, g.sigPriv, ac, st.ctxBytes); err != nil {
		return nil, err
	}
	ref, err := proposalRef(g.cs, ac)
	if err != nil {
		return nil, err
	}
	if err := st.checkCacheRoom(ref, g.cfg.maxCachedProposals()); err != nil {
		return nil, err
	}
	msg, err := g.protect(ac)
	if err != nil {
		return nil, err
	}
	if err := st.addProposal(cachedProposal{ref: ref, proposal: p, sender: me}, g.cfg.maxCachedProposals()); err != nil {
		return nil, err
	}
	return msg, nil
}

// ProposeAdd sends a proposal to add the owner of kp (RFC 9420, §12.1.1).
func (g *Group) ProposeAdd(kp *KeyPackage) (*MLSMessage, error) {
	return g.propose(&Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp}}, nil)
}

// ProposeRemove sends a proposal to remove the member at leaf (§12.1.3).
func (g *Group) ProposeRemove(leaf LeafIndex) (*MLSMessage, error) {
	return g.propose(&Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: leaf}}, nil)
}

// ProposeUpdate sends a proposal to replace this member's leaf with one
// holding a fresh encryption key (RFC 9420, §12.1.2), for post-compromise
// security without committing.
func (g *Group) ProposeUpdate() (*MLSMessage, error) {
	if err := g.canSend(); err != nil {
		return nil, err
	}
	if err := g.needTree(); err != nil {
		return nil, err
	}
	st := g.state
	me := st.priv.LeafIndex()
	old := st.tree.Leaf(me)
	encKey, err := g.cs.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	leaf := *old
	leaf.EncryptionKey = encKey.PublicKey()
	leaf.Source = treekem.SourceUpdate
	leaf.Lifetime = Lifetime{}
	leaf.ParentHash = nil
	if err := leaf.Sign(g.cs, g.sigPriv, st.ctx.GroupID, me); err != nil {
		return nil, err
	}
	msg, err := g.propose(&Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}}, nil)
	if err != nil {
		return nil, err
	}
	g.pendingUpdates = append(g.pendingUpdates, encKey)
	return msg, nil
}

// ProposePSK sends a proposal to inject a pre-shared key (§12.1.4). A nil
// nonce is replaced with a fresh one.
func (g *Group) ProposePSK(id PreSharedKeyID) (*MLSMessage, error) {
	if id.PSKNonce == nil {
		id.PSKNonce = keyschedule.NewPSKNonce(g.cs)
	}
	if _, err := g.lookupPSK(&id); err != nil {
		return nil, err
	}
	return g.propose(&Proposal{Type: ProposalTypePreSharedKey, PreSharedKey: &PreSharedKeyProposal{PSK: id}}, nil)
}

// ProposeGroupContextExtensions sends a proposal to replace the group's
// extensions (§12.1.7).
func (g *Group) ProposeGroupContextExtensions(exts []Extension) (*MLSMessage, error) {
	return g.propose(&Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: exts}}, nil)
}

// CommitOptions say what a commit does besides committing the proposals
// received in this epoch.
type CommitOptions struct {
	// Add, Remove, PSKs and Proposals are proposals sent by value in the
	// commit.
	Add       []*KeyPackage
	Remove    []LeafIndex
	PSKs      []PreSharedKeyID
	Proposals []Proposal
	// Extensions, if non-nil, replaces the group's extensions with a
	// GroupContextExtensions proposal.
	Extensions []Extension
	// SkipCached leaves out the proposals received by reference.
	SkipCached bool
	// ForcePath sends an UpdatePath even when no proposal requires one, to
	// refresh this member's keys (post-compromise security).
	ForcePath bool
	// RatchetTreeOutOfBand leaves the ratchet tree out of the Welcome's
	// GroupInfo; the joiners then need [Group.RatchetTree] out of band.
	RatchetTreeOutOfBand bool
	// GroupInfo asks for a signed GroupInfo of the new epoch in
	// [PendingCommit.GroupInfo] even when the commit adds nobody (it is
	// always built when there is a Welcome).
	GroupInfo bool
	// ExternalPub adds the external_pub extension to the GroupInfo, so that
	// new members can join by external commit.
	ExternalPub bool
	// AuthenticatedData is sent in the clear with the commit.
	AuthenticatedData []byte

	// link allows resumption PSKs of this usage (reinit or branch) in the
	// first commit of a re-created group.
	link keyschedule.ResumptionPSKUsage
}

// PendingCommit is a commit this member created, with the messages to send
// and the epoch it leads to (RFC 9420, §12.4.1). Send Commit to the group
// and Welcome to the new members; merge it with [Group.MergePendingCommit]
// once the delivery service has accepted it. If another member's commit for
// the same epoch arrives first, process and merge that one instead: this
// pending commit then no longer merges.
type PendingCommit struct {
	// Commit is the commit message for the group.
	Commit *MLSMessage
	// Welcome is the Welcome for the added members, or nil.
	Welcome *MLSMessage
	// GroupInfo is the signed GroupInfo of the new epoch, set when the
	// commit adds members or [CommitOptions.GroupInfo] asks for it.
	GroupInfo *MLSMessage
	// Dropped lists the cached proposals the commit leaves out, each with
	// the reason: invalid now (for instance an expired KeyPackage, or a
	// second Add of the same client), or from a non-member that
	// [Config.AcceptNonMemberProposal] did not accept.
	Dropped []DroppedProposal
	staged  *StagedCommit
}

// Staged returns the staged result of the commit, to inspect.
func (p *PendingCommit) Staged() *StagedCommit { return p.staged }

// MergePendingCommit makes a commit this member created the current epoch.
func (g *Group) MergePendingCommit(p *PendingCommit) error {
	if p == nil || p.staged == nil {
		return errors.New("mls: no pending commit")
	}
	return g.Merge(p.staged)
}

// Commit creates a commit of the proposals received in this epoch and those
// in opts (RFC 9420, §12.4.1), with an UpdatePath when one is required or
// requested. It does not change the group's epoch; the result is merged
// with [Group.MergePendingCommit]. Sending the commit as a PrivateMessage
// consumes a key of this member's handshake ratchet.
func (g *Group) Commit(opts *CommitOptions) (*PendingCommit, error) {
	if err := g.canSend(); err != nil {
		return nil, err
	}
	if err := g.needTree(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &CommitOptions{}
	}
	st := g.state
	cs := g.cs
	me := st.priv.LeafIndex()
	self := Sender{Type: SenderTypeMember, Index: uint32(me)}

	// The proposal list: cached proposals by reference, then ours by value.
	var commit Commit
	var byValue []*Proposal
	if opts.Extensions != nil {
		byValue = append(byValue, &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: opts.Extensions}})
	}
	for _, l := range opts.Remove {
		byValue = append(byValue, &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: l}})
	}
	for _, kp := range opts.Add {
		byValue = append(byValue, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp}})
	}
	for _, id := range opts.PSKs {
		if id.PSKNonce == nil {
			id.PSKNonce = keyschedule.NewPSKNonce(cs)
		}
		byValue = append(byValue, &Proposal{Type: ProposalTypePreSharedKey, PreSharedKey: &PreSharedKeyProposal{PSK: id}})
	}
	for i := range opts.Proposals {
		byValue = append(byValue, &opts.Proposals[i])
	}
	// Cached proposals that are invalid now, or from non-members the
	// application does not accept, are left out and reported: they must
	// not block every later commit of the group (RFC 9420, §12.2, §12.4.1).
	var chosen []cachedProposal
	var dropped []DroppedProposal
	if !opts.SkipCached {
		chosen, dropped = g.selectCached(st, self, byValue, opts.link)
	}
	list := func(chosen []cachedProposal) []resolvedProposal {
		props := make([]resolvedProposal, 0, len(chosen)+len(byValue))
		for _, c := range chosen {
			props = append(props, resolvedProposal{proposal: c.proposal, sender: c.sender, byRef: true})
		}
		for _, p := range byValue {
			props = append(props, resolvedProposal{proposal: p, sender: self})
		}
		return props
	}
	apply, err := g.applyProposalsLinked(st, list(chosen), self, opts.link)
	if err != nil && len(chosen) > 0 {
		// A rule that depends on the whole list (for instance an Add the
		// group's new extensions do not suit) still fails: keep the
		// cached proposals one at a time, in order, while the list applies.
		var kept []cachedProposal
		for _, c := range chosen {
			try := append(kept[:len(kept):len(kept)], c)
			if _, err := g.applyProposalsLinked(st, list(try), self, opts.link); err != nil {
				dropped = append(dropped, DroppedProposal{Ref: c.ref, Proposal: c.proposal, Sender: c.sender, Err: err})
				continue
			}
			kept = try
		}
		chosen = kept
		apply, err = g.applyProposalsLinked(st, list(chosen), self, opts.link)
	}
	if err != nil {
		return nil, err
	}
	for _, c := range chosen {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefReference, Reference: c.ref})
	}
	for _, p := range byValue {
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefProposal, Proposal: p})
	}
	if apply.selfRemoved {
		return nil, invalid("12.2", "a commit cannot remove its committer")
	}
	tree := apply.tree
	newExt := apply.extensions
	provisional := st.provisionalContext(newExt)
	priv := st.priv.Prune(tree)
	var commitSecret []byte
	var path *treekem.PendingPath
	if apply.pathRequired || opts.ForcePath {
		path, err = tree.GenerateUpdatePath(me, nil, g.sigPriv, st.ctx.GroupID, apply.added)
		if err != nil {
			return nil, err
		}
		defer path.Erase()
		provisional.TreeHash = tree.TreeHash()
		up, err := path.Encrypt(provisional.Bytes())
		if err != nil {
			return nil, err
		}
		commit.Path = up
		commitSecret = path.CommitSecret()
		priv = path.PrivateKeys()
	} else {
		provisional.TreeHash = tree.TreeHash()
	}

	c := g.framedContent(opts.AuthenticatedData)
	c.ContentType = ContentTypeCommit
	c.Commit = &commit
	ac := &AuthenticatedContent{WireFormat: g.handshakeWireFormat(), Content: c}
	if err := signContent(cs, g.sigPriv, ac, st.ctxBytes); err != nil {
		return nil, err
	}
	input, err := ac.confirmedTranscriptHashInput()
	if err != nil {
		return nil, err
	}
	newCtx := provisional
	newCtx.ConfirmedTranscriptHash = keyschedule.ConfirmedTranscriptHash(cs, st.interim, input)
	newCtxBytes := newCtx.Bytes()

	secrets, joiner, pskSecret, err := g.nextEpochSecrets(st.secrets.NextInit(), commitSecret, newCtxBytes, apply.psks)
	if err != nil {
		return nil, err
	}
	defer joiner.Erase()
	defer clear(pskSecret)
	ac.Auth.ConfirmationTag = secrets.ConfirmationTag(newCtx.ConfirmedTranscriptHash)
	interim := keyschedule.InterimTranscriptHash(cs, newCtx.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag)

	msg, err := g.protect(ac)
	if err != nil {
		secrets.Erase()
		return nil, err
	}
	newState, err := g.newEpochState(newCtx, tree, priv, secrets, interim)
	if err != nil {
		return nil, err
	}
	pc := &PendingCommit{
		Commit:  msg,
		Dropped: dropped,
		staged: &StagedCommit{
			fromEpoch: st.ctx.Epoch, state: newState, Committer: self,
			Added: apply.added, Removed: apply.removed, Updated: apply.updated, PSKs: apply.psks, ReInit: apply.reinit,
			Proposals: apply.proposals,
		},
	}
	if path != nil {
		pc.staged.Updated = append(pc.staged.Updated, me)
	}

	// The GroupInfo of the new epoch, and the Welcome (§12.4.3). Both cost
	// O(n) with the tree inline, so they are built only when needed.
	if len(apply.added) == 0 && !opts.GroupInfo {
		return pc, nil
	}
	gi, err := g.groupInfo(newState, !opts.RatchetTreeOutOfBand, opts.ExternalPub)
	if err != nil {
		return nil, err
	}
	pc.GroupInfo = &MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: gi}
	if len(apply.added) > 0 {
		w, err := g.welcome(gi, joiner, pskSecret, apply, path, tree)
		if err != nil {
			return nil, err
		}
		pc.Welcome = &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: w}
	}
	return pc, nil
}

// groupInfo returns a signed GroupInfo for the epoch st (§12.4.3).
func (g *Group) groupInfo(st *epochState, withTree, externalPub bool) (*GroupInfo, error) {
	gi := &GroupInfo{
		GroupContext:    st.ctx,
		ConfirmationTag: nil,
		Signer:          st.priv.LeafIndex(),
	}
	// The confirmation tag of the epoch is recomputed from its secrets.
	gi.ConfirmationTag = st.secrets.ConfirmationTag(st.ctx.ConfirmedTranscriptHash)
	if withTree {
		gi.Extensions = append(gi.Extensions, Extension{Type: ExtensionRatchetTree, Data: st.tree.Bytes()})
	}
	// A GREASE extension, which receivers must ignore (§13.5).
	gi.Extensions = append(gi.Extensions, greaseExtension())
	if externalPub {
		kp, err := st.secrets.ExternalKeyPair()
		if err != nil {
			return nil, err
		}
		data, err := wire.Marshal(func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, kp.PublicKey()) })
		if err != nil {
			return nil, err
		}
		gi.Extensions = append(gi.Extensions, Extension{Type: ExtensionExternalPub, Data: data})
	}
	if err := gi.sign(g.cs, g.sigPriv); err != nil {
		return nil, err
	}
	return gi, nil
}

// GroupInfoOptions are the choices of [Group.GroupInfo]. The zero value
// (or nil) selects a GroupInfo with the ratchet tree and without
// external_pub.
type GroupInfoOptions struct {
	// RatchetTreeOutOfBand leaves the ratchet_tree extension out
	// (RFC 9420, §12.4.3.3): the receiver then needs [Group.RatchetTree]
	// from elsewhere.
	RatchetTreeOutOfBand bool
	// ExternalPub adds the external_pub extension, so that new members can
	// join by external commit ([JoinExternal], §12.4.3.2).
	ExternalPub bool
}

// GroupInfo returns a signed GroupInfo of the current epoch, for new
// members joining by external commit (with [GroupInfoOptions.ExternalPub])
// or for publishing. opts may be nil.
func (g *Group) GroupInfo(opts *GroupInfoOptions) (*MLSMessage, error) {
	if opts == nil {
		opts = &GroupInfoOptions{}
	}
	if err := g.needTree(); err != nil {
		return nil, err
	}
	gi, err := g.groupInfo(g.state, !opts.RatchetTreeOutOfBand, opts.ExternalPub)
	if err != nil {
		return nil, err
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: gi}, nil
}

// welcome builds the Welcome for the members a commit adds (§12.4.3.1).
func (g *Group) welcome(gi *GroupInfo, joiner *keyschedule.JoinerSecret, pskSecret []byte, apply *appliedProposals, path *treekem.PendingPath, tree *treekem.Tree) (*Welcome, error) {
	cs := g.cs
	giBytes, err := gi.Bytes()
	if err != nil {
		return nil, err
	}
	ws := joiner.WelcomeSecret(pskSecret)
	key, nonce := ws.Key(), ws.Nonce()
	ws.Erase()
	encGI, err := cs.AEADSeal(key, nonce, nil, giBytes)
	clear(key)
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: cs, EncryptedGroupInfo: encGI, Secrets: make([]EncryptedGroupSecrets, 0, len(apply.added))}
	// The encrypted GroupInfo, which holds the tree, is the context of
	// every entry (§12.4.3.1): hash it once, not once per new member, or
	// adding k members costs O(k(n+k)).
	enc, err := cs.NewLabeledEncryptor("Welcome", encGI)
	if err != nil {
		return nil, err
	}
	for _, l := range apply.added {
		leaf := tree.Leaf(l)
		kp := apply.addedKeyPackages[l]
		if kp == nil || !bytes.Equal(leaf.EncryptionKey, kp.LeafNode.EncryptionKey) {
			return nil, errors.New("mls: internal error: added leaf without its key package")
		}
		gs := GroupSecrets{JoinerSecret: joiner.Bytes(), PSKs: apply.psks}
		if path != nil {
			if ps, ok := path.PathSecret(l); ok {
				gs.PathSecret = ps
			}
		}
		pt, err := wire.Marshal(gs.marshal)
		if err != nil {
			return nil, err
		}
		kem, ct, err := enc.Encrypt(kp.InitKey, pt)
		clear(pt)
		if err != nil {
			return nil, fmt.Errorf("mls: encrypting group secrets: %w", err)
		}
		ref, err := kp.Ref()
		if err != nil {
			return nil, err
		}
		w.Secrets = append(w.Secrets, EncryptedGroupSecrets{NewMember: ref, EncryptedGroupSecrets: HPKECiphertext{KEMOutput: kem, Ciphertext: ct}})
	}
	return w, nil
}

var _ = hpke.ErrDecryption
