package mls

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Processed is the result of [Group.Process]. Which fields are set
// depends on ContentType.
type Processed struct {
	// ContentType is the kind of content the message carried.
	ContentType ContentType
	// Sender is who sent the message.
	Sender Sender
	// Epoch is the epoch the message was sent in.
	Epoch uint64
	// AuthenticatedData is the message's unencrypted authenticated data.
	AuthenticatedData []byte
	// ApplicationData is the plaintext of an application message. The
	// caller owns it.
	ApplicationData []byte
	// Proposal is a proposal the group has cached for a later commit, and
	// ProposalRef its reference.
	Proposal    *Proposal
	ProposalRef ProposalRef
	// Commit is a validated commit, to inspect and then merge with
	// [Group.Merge].
	Commit *StagedCommit
}

// StagedCommit is a validated commit whose new epoch is ready but not yet
// in effect (RFC 9420, §12.4.2). Merge it with [Group.Merge], or drop it to
// stay in the current epoch.
type StagedCommit struct {
	fromEpoch uint64
	state     *epochState
	// Added lists the leaves of the members this commit adds.
	Added []LeafIndex
	// Removed lists the leaves of the members this commit removes.
	Removed []LeafIndex
	// Updated lists the leaves whose members updated their leaf nodes,
	// the committer's included when it sent a path.
	Updated []LeafIndex
	// PSKs lists the pre-shared keys the commit injects.
	PSKs []PreSharedKeyID
	// Committer is the sender of the commit.
	Committer Sender
	// SelfRemoved is true if the commit removes this member.
	SelfRemoved bool
	// ReInit is set if the commit carries a ReInit proposal. Once the
	// commit is merged, the group only waits to be re-created (see
	// [Group.ReInit]).
	ReInit *ReInitProposal
	// Proposals lists every proposal the commit covers, in commit order,
	// custom ones included. The caller must not modify them.
	Proposals []*Proposal
	// ExternalJoin is true for an external commit (RFC 9420, §12.4.3.2):
	// its sender joined at the leaf listed last in Added.
	ExternalJoin bool
}

// Epoch returns the epoch the commit leads to.
func (s *StagedCommit) Epoch() uint64 { return s.fromEpoch + 1 }

// EpochAuthenticator returns the epoch authenticator of the epoch the
// commit leads to, or nil if the commit removes this member.
func (s *StagedCommit) EpochAuthenticator() []byte {
	if s.state == nil {
		return nil
	}
	return s.state.secrets.EpochAuthenticator()
}

// Merge makes a staged commit the group's current epoch. It fails if the
// group has moved on since the commit was staged.
func (g *Group) Merge(s *StagedCommit) error {
	if s == nil || (s.state == nil && !s.SelfRemoved) {
		return fmt.Errorf("mls: merging an empty staged commit")
	}
	if s.fromEpoch != g.state.ctx.Epoch || !g.active {
		return fmt.Errorf("%w: staged for epoch %d, group is at %d", ErrWrongEpoch, s.fromEpoch, g.state.ctx.Epoch)
	}
	if s.SelfRemoved {
		// Keep the current epoch readable for late messages, but nothing
		// can be sent or committed any more.
		g.active = false
		g.pendingUpdates = nil
		g.state.secrets.EraseInit()
		return nil
	}
	old := g.state
	// Keep the old epoch's decryption keys for late messages.
	if n := g.cfg.pastEpochs(); n > 0 {
		g.past = append(g.past, &pastEpoch{epoch: old.ctx.Epoch, framer: old.framer, tree: old.tree, ctxBytes: old.ctxBytes})
		for len(g.past) > n {
			g.past[0].framer.secretTree.Erase()
			clear(g.past[0].framer.senderDataSecret)
			g.past = g.past[1:]
		}
	} else {
		old.framer.secretTree.Erase()
		clear(old.framer.senderDataSecret)
	}
	g.resumption = append(g.resumption, resumptionPSK{epoch: old.ctx.Epoch, secret: bytes.Clone(old.secrets.ResumptionPSK())})
	for len(g.resumption) > g.cfg.resumptionEpochs() {
		clear(g.resumption[0].secret)
		g.resumption = g.resumption[1:]
	}
	old.secrets.Erase()
	g.state = s.state
	s.state = nil
	g.pendingUpdates = nil
	if s.ReInit != nil {
		g.reinit = s.ReInit
	}
	if s.SelfRemoved {
		g.active = false
	}
	return nil
}

// Process validates a message received for the group and returns what it
// carries. It never changes the group's epoch: a commit comes back as a
// [StagedCommit] to merge. Two changes do happen on success, as RFC 9420
// requires: the key that decrypted a PrivateMessage is deleted (§9.2), and
// a proposal is cached for the commit that will reference it. On error,
// nothing changes.
func (g *Group) Process(msg *MLSMessage) (*Processed, error) {
	if !g.active {
		return nil, ErrInactive
	}
	var (
		ac       *AuthenticatedContent
		err      error
		groupID  []byte
		epoch    uint64
		wf       = msg.WireFormat
		st       = g.state
		verifyFn func(*AuthenticatedContent) error
	)
	switch {
	case wf == WireFormatPublicMessage && msg.PublicMessage != nil:
		groupID, epoch = msg.PublicMessage.Content.GroupID, msg.PublicMessage.Content.Epoch
	case wf == WireFormatPrivateMessage && msg.PrivateMessage != nil:
		groupID, epoch = msg.PrivateMessage.GroupID, msg.PrivateMessage.Epoch
	default:
		return nil, fmt.Errorf("%w: wire format %d cannot be processed by a group", ErrUnsupported, wf)
	}
	if !bytes.Equal(groupID, st.ctx.GroupID) {
		return nil, ErrWrongGroup
	}
	if wf != WireFormatPrivateMessage || msg.PrivateMessage.ContentType != ContentTypeApplication {
		// mutants:skip the application's store failing to decode its own stored tree, not peer input
		if err := g.needTree(); err != nil { // the tree may still be encoded (OpenGroup)
			return nil, err
		}
	}
	if g.reinit != nil {
		// A reinitialized group only reads late application messages.
		if wf != WireFormatPrivateMessage || msg.PrivateMessage.ContentType != ContentTypeApplication {
			return nil, fmt.Errorf("%w: handshake message", ErrReInitialized)
		}
	}

	if epoch != st.ctx.Epoch {
		// Only application messages of kept past epochs are readable.
		if epoch > st.ctx.Epoch {
			return nil, fmt.Errorf("%w: %w: message for epoch %d, group at %d", ErrWrongEpoch, ErrFutureEpoch, epoch, st.ctx.Epoch)
		}
		if wf != WireFormatPrivateMessage || msg.PrivateMessage.ContentType != ContentTypeApplication {
			return nil, fmt.Errorf("%w: %w: handshake message for epoch %d, group at %d", ErrWrongEpoch, ErrEpochTooOld, epoch, st.ctx.Epoch)
		}
		return g.processPastApplication(msg.PrivateMessage)
	}

	if err := g.checkWireFormat(msg); err != nil {
		return nil, err
	}

	// The whole content is validated before anything changes: for a
	// PrivateMessage, inside the callback that runs before its ratchet key
	// is consumed, so that a message with a valid signature but invalid
	// content consumes nothing and can be refused again the same way.
	var (
		res    *Processed
		cached *cachedProposal
	)
	verifyFn = func(ac *AuthenticatedContent) error {
		if err := g.verifySender(st, ac); err != nil {
			return err
		}
		var verr error
		res, cached, verr = g.validateContent(ac)
		return verr
	}
	if wf == WireFormatPublicMessage {
		if msg.PublicMessage.Content.ContentType == ContentTypeApplication {
			return nil, invalid("6.2", "application data in a PublicMessage")
		}
		ac, err = st.framer.unprotectPublic(msg.PublicMessage)
		if err == nil {
			err = verifyFn(ac)
		}
	} else {
		_, err = st.framer.unprotectPrivate(msg.PrivateMessage, verifyFn)
	}
	if err != nil {
		return nil, err
	}
	if cached != nil {
		if err := st.addProposal(*cached, g.cfg.maxCachedProposals()); err != nil {
			return nil, err // not reached: validateContent checked the room
		}
	}
	return res, nil
}

// validateContent validates the content of a message whose sender and
// signature are verified and returns its result, without changing the
// group; for a proposal it also returns the cache entry to add.
func (g *Group) validateContent(ac *AuthenticatedContent) (*Processed, *cachedProposal, error) {
	res := &Processed{
		ContentType:       ac.Content.ContentType,
		Sender:            ac.Content.Sender,
		Epoch:             ac.Content.Epoch,
		AuthenticatedData: ac.Content.AuthenticatedData,
	}
	switch ac.Content.ContentType {
	case ContentTypeApplication:
		res.ApplicationData = ac.Content.ApplicationData
		return res, nil, nil
	case ContentTypeProposal:
		c, err := g.checkReceivedProposal(ac)
		if err != nil {
			return nil, nil, err
		}
		res.Proposal, res.ProposalRef = c.proposal, c.ref
		return res, c, nil
	case ContentTypeCommit:
		sc, err := g.stageCommit(ac)
		if err != nil {
			return nil, nil, err
		}
		res.Commit = sc
		return res, nil, nil
	}
	return nil, nil, malformed("content type", nil)
}

// processPastApplication decrypts an application message of a kept past
// epoch.
func (g *Group) processPastApplication(pm *PrivateMessage) (*Processed, error) {
	for _, p := range g.past {
		if p.epoch != pm.Epoch {
			continue
		}
		ac, err := p.framer.unprotectPrivate(pm, func(ac *AuthenticatedContent) error {
			if n := g.senderLeafCount(p.tree, p.framer); ac.Content.Sender.Index >= n {
				return leafOutOfRange("6.3.2", "sender leaf", ac.Content.Sender.Index, n)
			}
			leaf := g.senderLeaf(p.tree, p.framer, LeafIndex(ac.Content.Sender.Index))
			if leaf == nil {
				return fmt.Errorf("%w: unknown sender", ErrDecryption)
			}
			return verifyContent(g.cs, leaf.SignatureKey, ac, p.ctxBytes)
		})
		if err != nil {
			return nil, err
		}
		return &Processed{
			ContentType:       ContentTypeApplication,
			Sender:            ac.Content.Sender,
			Epoch:             pm.Epoch,
			AuthenticatedData: ac.Content.AuthenticatedData,
			ApplicationData:   ac.Content.ApplicationData,
		}, nil
	}
	return nil, fmt.Errorf("%w: %w: epoch %d", ErrWrongEpoch, ErrEpochTooOld, pm.Epoch)
}

// senderKey returns the signature key that must have signed ac and the
// sender's credential.
func (g *Group) senderKey(st *epochState, ac *AuthenticatedContent) ([]byte, *Credential, error) {
	c := &ac.Content
	switch c.Sender.Type {
	case SenderTypeMember:
		// Range-check the index before any use (RFC 9420, §6; Appendix C).
		if n := g.senderLeafCount(st.tree, st.framer); c.Sender.Index >= n {
			return nil, nil, leafOutOfRange("6", "sender leaf", c.Sender.Index, n)
		}
		leaf := g.senderLeaf(st.tree, st.framer, LeafIndex(c.Sender.Index))
		if leaf == nil {
			return nil, nil, invalid("6.1", "sender leaf %d is blank", c.Sender.Index)
		}
		return leaf.SignatureKey, &leaf.Credential, nil
	case SenderTypeExternal:
		data, ok := findExtension(st.extensions, ExtensionExternalSenders)
		if !ok {
			return nil, nil, invalid("12.1.8", "external sender but no external_senders extension")
		}
		senders, err := unmarshalExternalSenders(data)
		if err != nil {
			return nil, nil, err
		}
		if uint64(c.Sender.Index) >= uint64(len(senders)) {
			return nil, nil, invalid("12.1.8", "external sender index %d out of range", c.Sender.Index)
		}
		return senders[c.Sender.Index].SignatureKey, &senders[c.Sender.Index].Credential, nil
	case SenderTypeNewMemberProposal:
		if c.ContentType != ContentTypeProposal || c.Proposal.Type != ProposalTypeAdd {
			return nil, nil, invalid("12.1.8", "new_member_proposal sender must send an Add")
		}
		return c.Proposal.Add.KeyPackage.LeafNode.SignatureKey, &c.Proposal.Add.KeyPackage.LeafNode.Credential, nil
	case SenderTypeNewMemberCommit:
		if c.ContentType != ContentTypeCommit || c.Commit.Path == nil {
			return nil, nil, invalid("12.4.3.2", "new_member_commit sender must send a commit with a path")
		}
		return c.Commit.Path.LeafNode.SignatureKey, &c.Commit.Path.LeafNode.Credential, nil
	}
	return nil, nil, invalid("6", "sender type %d", c.Sender.Type)
}

// verifySender checks the rules on who may send what (RFC 9420, §6) and
// the content signature.
func (g *Group) verifySender(st *epochState, ac *AuthenticatedContent) error {
	c := &ac.Content
	if c.ContentType == ContentTypeCommit && c.Sender.Type != SenderTypeMember && c.Sender.Type != SenderTypeNewMemberCommit {
		return invalid("6", "commit from sender type %d", c.Sender.Type)
	}
	if c.ContentType == ContentTypeApplication && c.Sender.Type != SenderTypeMember {
		return invalid("6", "application message from a non-member")
	}
	if ac.WireFormat == WireFormatPrivateMessage && c.Sender.Type != SenderTypeMember {
		return invalid("6.3", "PrivateMessage from a non-member")
	}
	key, cred, err := g.senderKey(st, ac)
	if err != nil {
		return err
	}
	if v := g.cfg.ValidateCredential; v != nil {
		if err := v(cred, key); err != nil {
			return &ValidationError{Section: "5.3.1", Err: fmt.Errorf("sender credential rejected: %w", err)}
		}
	}
	return verifyContent(g.cs, key, ac, st.ctxBytes)
}

// checkReceivedProposal validates a proposal received by reference, and
// that the cache has room for it, and returns its cache entry.
func (g *Group) checkReceivedProposal(ac *AuthenticatedContent) (*cachedProposal, error) {
	st := g.state
	p := ac.Content.Proposal
	sender := ac.Content.Sender
	switch sender.Type {
	case SenderTypeExternal:
		// Only these types may come from an external sender; anything
		// else is malformed (§12.1.8).
		switch p.Type {
		case ProposalTypeAdd, ProposalTypeRemove, ProposalTypePreSharedKey, ProposalTypeReInit, ProposalTypeGroupContextExtensions:
		default:
			return nil, &ValidationError{Section: "12.1.8", Err: fmt.Errorf("%w: external sender proposed type %d", ErrMalformed, p.Type)}
		}
	case SenderTypeNewMemberProposal:
		if p.Type != ProposalTypeAdd {
			return nil, invalid("12.1.8", "new_member_proposal sender must send an Add")
		}
	}
	if p.Type == ProposalTypeExternalInit {
		return nil, invalid("12.1.6", "ExternalInit sent by reference")
	}
	if err := g.checkProposal(st, st.tree, p, sender); err != nil {
		return nil, err
	}
	ref, err := proposalRef(g.cs, ac)
	if err != nil {
		return nil, err
	}
	if err := st.checkCacheRoom(ref, g.cfg.maxCachedProposals()); err != nil {
		return nil, err
	}
	return &cachedProposal{ref: ref, proposal: p, sender: sender}, nil
}

// checkProposal runs the checks of RFC 9420, §12.1 on a proposal sent or
// received on its own, by reference: those of checkProposalInCommit, and
// that every member supports a GroupContextExtensions change or a
// proposal of a non-default type.
func (g *Group) checkProposal(st *epochState, tree *treekem.Tree, p *Proposal, sender Sender) error {
	if err := g.checkProposalInCommit(st, tree, p, sender, 0); err != nil {
		return err
	}
	switch {
	case p.Type == ProposalTypeGroupContextExtensions:
		return g.checkGroupContextExtensions(tree, p.GroupContextExtensions.Extensions)
	case !p.Type.IsDefault():
		return checkCustomProposalSupport(p.Type, tree, nil)
	}
	return nil
}

// checkCustomProposalSupport checks that every member of tree but those
// in skip supports the non-default proposal type t (RFC 9420, §12.2, §13.2).
func checkCustomProposalSupport(t ProposalType, tree *treekem.Tree, skip map[LeafIndex]bool) error {
	for i, l := range tree.Leaves() {
		if !skip[i] && !l.Capabilities.SupportsProposal(t) {
			return &ValidationError{Section: "13.2", Err: fmt.Errorf("%w: proposal type %d not supported by member %d", ErrUnsupported, t, i)}
		}
	}
	return nil
}

// checkProposalInCommit runs the checks of RFC 9420, §12.1 on one proposal
// that do not depend on the rest of the commit. link is the resumption PSK
// usage (reinit or branch) allowed in the first commit of a group
// re-created by ReInit or branching (§11.2, §11.3), or zero.
func (g *Group) checkProposalInCommit(st *epochState, tree *treekem.Tree, p *Proposal, sender Sender, link keyschedule.ResumptionPSKUsage) error {
	if g.cfg.ProposalPolicy != nil {
		if err := g.cfg.ProposalPolicy(p, sender); err != nil {
			return &ValidationError{Section: "12.1", Err: fmt.Errorf("rejected by policy: %w", err)}
		}
	}
	switch p.Type {
	case ProposalTypeAdd:
		kp := &p.Add.KeyPackage
		if kp.CipherSuite != g.cs || kp.Version != st.ctx.Version {
			return invalid("12.1.1", "key package version or cipher suite differs from the group's")
		}
		return g.verifyKeyPackage(kp)
	case ProposalTypeUpdate:
		if sender.Type != SenderTypeMember {
			return invalid("12.1.2", "update from a non-member")
		}
		opts, err := g.validateOptions(st.ctx.GroupID, st.extensions, false)
		if err != nil {
			return err
		}
		if err := tree.ValidateLeafNode(&p.Update.LeafNode, treekem.SourceUpdate, LeafIndex(sender.Index), opts); err != nil {
			return &ValidationError{Section: "12.1.2", Err: err}
		}
	case ProposalTypeRemove:
		if !tree.HasLeaf(p.Remove.Removed) {
			return leafOutOfRange("12.1.3", "Remove of leaf", uint32(p.Remove.Removed), tree.LeafCount())
		}
		if tree.Leaf(p.Remove.Removed) == nil {
			return invalid("12.1.3", "remove of blank leaf %d", p.Remove.Removed)
		}
	case ProposalTypePreSharedKey:
		id := &p.PreSharedKey.PSK
		linked := link != 0 && id.PSKType == keyschedule.PSKTypeResumption && id.Usage == link
		return checkPSKID(g.cs, id, linked)
	case ProposalTypeReInit:
		if p.ReInit.Version < st.ctx.Version {
			return invalid("12.1.5", "ReInit to an older version")
		}
		if !p.ReInit.CipherSuite.Supported() {
			return fmt.Errorf("%w: ReInit cipher suite %v", ErrUnsupported, p.ReInit.CipherSuite)
		}
		// The extensions become the new group's GroupContext extensions:
		// no type twice (§13.4), and those this package reads well formed;
		// otherwise the group would merge a ReInit it cannot carry out.
		return checkExtensionsSyntax(p.ReInit.Extensions)
	case ProposalTypeExternalInit:
	case ProposalTypeGroupContextExtensions:
		// Whether the members support the new extensions depends on the
		// commit's Removes and Adds: see checkGroupContextExtensions.
		return checkExtensionsSyntax(p.GroupContextExtensions.Extensions)
	default:
		// Support by every member is checked against the members who
		// will process the commit (§12.2).
	}
	return nil
}

// checkExtensionsSyntax checks a GroupContext extension list on its own:
// no type twice, and the extensions this package interprets well formed.
func checkExtensionsSyntax(exts []Extension) error {
	if treekem.DuplicateExtension(exts) {
		return invalid("13.4", "duplicate extension")
	}
	if data, ok := findExtension(exts, ExtensionRequiredCapabilities); ok {
		if _, err := unmarshalRequiredCapabilities(data); err != nil {
			return &ValidationError{Section: "11.1", Err: err}
		}
	}
	if data, ok := findExtension(exts, ExtensionExternalSenders); ok {
		if _, err := unmarshalExternalSenders(data); err != nil {
			return &ValidationError{Section: "12.1.8.1", Err: err}
		}
	}
	return nil
}

// checkGroupContextExtensions checks that every member supports the new
// extensions and meets the new required capabilities (§12.1.7).
func (g *Group) checkGroupContextExtensions(tree *treekem.Tree, exts []Extension) error {
	// mutants:skip equivalent: every caller checked the extensions' syntax before (checkProposalInCommit)
	if err := checkExtensionsSyntax(exts); err != nil {
		return err
	}
	var rc *RequiredCapabilities
	if data, ok := findExtension(exts, ExtensionRequiredCapabilities); ok {
		rc, _ = unmarshalRequiredCapabilities(data) // checked above
	}
	types := treekem.ExtensionTypes(exts)
	for i, l := range tree.Leaves() {
		if t, missing := l.Capabilities.UnsupportedExtension(types); missing {
			return &ValidationError{Section: "12.1.7", Err: fmt.Errorf("%w: member %d does not support extension %d", ErrUnsupported, i, t)}
		}
		if rc != nil && !rc.SatisfiedBy(&l.Capabilities) {
			return &ValidationError{Section: "12.1.7", Err: fmt.Errorf("%w: member %d lacks a required capability", ErrUnsupported, i)}
		}
	}
	// This member judges its own support without its GREASE values
	// (§13.5).
	if g.state != nil {
		if own := tree.Leaf(g.state.priv.LeafIndex()); own != nil {
			if err := checkOwnSupport(&own.Capabilities, exts); err != nil {
				return &ValidationError{Section: "12.1.7", Err: err}
			}
		}
	}
	return nil
}

// resolvedProposal is a proposal of a commit with its sender.
type resolvedProposal struct {
	proposal *Proposal
	sender   Sender
	byRef    bool
}

// resolveProposals turns a commit's proposal list into proposals, looking up
// references in the epoch's cache.
func (g *Group) resolveProposals(st *epochState, commit *Commit, committer Sender) ([]resolvedProposal, error) {
	if max := g.cfg.Limits.maxProposals(); len(commit.Proposals) > max {
		return nil, limitError("12.4", "proposals per commit", max)
	}
	out := make([]resolvedProposal, 0, len(commit.Proposals))
	for i := range commit.Proposals {
		por := &commit.Proposals[i]
		switch por.Type {
		case ProposalOrRefProposal:
			out = append(out, resolvedProposal{proposal: por.Proposal, sender: committer})
		case ProposalOrRefReference:
			c, ok := st.findProposal(por.Reference)
			if !ok {
				return nil, fmt.Errorf("%w: proposal reference %x", ErrNotFound, []byte(por.Reference))
			}
			out = append(out, resolvedProposal{proposal: c.proposal, sender: c.sender, byRef: true})
		}
	}
	return out, nil
}

// stageCommit validates a commit and computes the epoch it leads to
// (RFC 9420, §12.4.2), without changing the group.
func (g *Group) stageCommit(ac *AuthenticatedContent) (*StagedCommit, error) {
	st := g.state
	cs := g.cs
	commit := ac.Content.Commit
	committer := ac.Content.Sender
	external := committer.Type == SenderTypeNewMemberCommit
	if committer.Type == SenderTypeMember && LeafIndex(committer.Index) == st.priv.LeafIndex() {
		return nil, invalid("12.4.2", "a commit from ourselves must be merged from the pending commit")
	}

	props, err := g.resolveProposals(st, commit, committer)
	if err != nil {
		return nil, err
	}
	apply, err := g.applyProposals(st, props, committer)
	if err != nil {
		return nil, err
	}
	tree := apply.tree

	// §12.4: a path is required unless every proposal is an Add, PSK or
	// ReInit, and the list is not empty.
	if apply.pathRequired && commit.Path == nil {
		return nil, invalid("12.4", "commit requires a path")
	}
	if external && len(apply.removed) > 0 {
		if err := g.checkResync(st.tree, apply.removed[0], &commit.Path.LeafNode); err != nil {
			return nil, err
		}
	}

	newExt := apply.extensions
	provisional := st.provisionalContext(newExt)
	var commitSecret []byte
	priv := st.priv
	if slices.Contains(apply.updated, priv.LeafIndex()) {
		// Another member committed our Update: our leaf key is the one we
		// generated for it.
		want := tree.Leaf(priv.LeafIndex()).EncryptionKey
		i := slices.IndexFunc(g.pendingUpdates, func(k *hpke.PrivateKey) bool { return bytes.Equal(k.PublicKey(), want) })
		if i < 0 {
			return nil, fmt.Errorf("%w: private key of our own Update proposal", ErrNotFound)
		}
		priv = treekem.NewPrivateKeys(cs, priv.LeafIndex(), g.pendingUpdates[i])
	}
	var sender LeafIndex
	sc := &StagedCommit{fromEpoch: st.ctx.Epoch, Committer: committer, Added: apply.added, Removed: apply.removed, Updated: apply.updated, ReInit: apply.reinit, Proposals: apply.proposals, ExternalJoin: external}
	if commit.Path != nil {
		if external {
			sender = tree.LeftmostBlankLeaf()
		} else {
			sender = LeafIndex(committer.Index)
		}
		opts, err := g.validateOptions(st.ctx.GroupID, newExt, false)
		if err != nil {
			return nil, err
		}
		if err := tree.MergeUpdatePath(sender, commit.Path, apply.added, opts); err != nil {
			return nil, &ValidationError{Section: "12.4.2", Err: err}
		}
		provisional.TreeHash = tree.TreeHash()
		if !apply.selfRemoved {
			priv, commitSecret, err = tree.DecryptUpdatePath(priv.Prune(tree), sender, commit.Path, provisional.Bytes(), apply.added)
			if err != nil {
				return nil, &ValidationError{Section: "12.4.2", Err: err}
			}
		}
		if external {
			sc.Added = append(slices.Clip(sc.Added), sender)
		} else {
			sc.Updated = append(slices.Clip(sc.Updated), sender)
		}
	} else {
		provisional.TreeHash = tree.TreeHash()
	}
	if apply.selfRemoved {
		// We cannot follow the group into the new epoch: we receive no
		// path secret, so neither the commit secret nor the confirmation
		// tag can be computed. The commit's signature and membership
		// were verified; merging it ends our membership.
		sc.SelfRemoved = true
		return sc, nil
	}
	priv = priv.Prune(tree)

	// Transcript hashes and the new GroupContext (§8.2, §12.4.2).
	input, err := ac.confirmedTranscriptHashInput()
	if err != nil {
		return nil, err
	}
	newCtx := provisional
	newCtx.ConfirmedTranscriptHash = keyschedule.ConfirmedTranscriptHash(cs, st.interim, input)
	newCtxBytes := newCtx.Bytes()

	// The key schedule (§8).
	var init *keyschedule.InitSecret
	if external {
		if apply.externalInit == nil {
			return nil, invalid("12.4.3.2", "external commit without ExternalInit")
		}
		init, err = st.secrets.ExternalInit(apply.externalInit.KEMOutput)
		if err != nil {
			return nil, fmt.Errorf("%w: external init", ErrDecryption)
		}
	} else {
		init = st.secrets.NextInit()
	}
	secrets, joiner, pskSecret, err := g.nextEpochSecrets(init, commitSecret, newCtxBytes, apply.psks)
	if err != nil {
		return nil, err
	}
	joiner.Erase()
	clear(pskSecret)
	if !secrets.VerifyConfirmationTag(newCtx.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag) {
		secrets.Erase()
		return nil, fmt.Errorf("%w: confirmation tag", ErrDecryption)
	}
	interim := keyschedule.InterimTranscriptHash(cs, newCtx.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag)
	sc.state, err = g.newEpochState(newCtx, tree, priv, secrets, interim)
	if err != nil {
		return nil, err
	}
	sc.PSKs = apply.psks
	sc.SelfRemoved = apply.selfRemoved
	return sc, nil
}

// appliedProposals is the outcome of applying a commit's proposals.
type appliedProposals struct {
	tree         *treekem.Tree
	extensions   []Extension
	added        []LeafIndex
	removed      []LeafIndex
	updated      []LeafIndex
	psks         []PreSharedKeyID
	reinit       *ReInitProposal
	externalInit *ExternalInitProposal
	pathRequired bool
	selfRemoved  bool
	// addedKeyPackages maps each added leaf to its KeyPackage.
	addedKeyPackages map[LeafIndex]*KeyPackage
	// proposals lists the proposals in commit order.
	proposals []*Proposal
}

// applyProposals validates a commit's proposal list (RFC 9420, §12.2) and
// applies it to a copy of the tree (§12.3).
func (g *Group) applyProposals(st *epochState, props []resolvedProposal, committer Sender) (*appliedProposals, error) {
	return g.applyProposalsLinked(st, props, committer, 0)
}

// applyProposalsLinked is applyProposals allowing resumption PSKs of usage
// link (see checkProposalInCommit).
func (g *Group) applyProposalsLinked(st *epochState, props []resolvedProposal, committer Sender, link keyschedule.ResumptionPSKUsage) (*appliedProposals, error) {
	out := &appliedProposals{tree: st.tree.Clone(), extensions: st.extensions, pathRequired: len(props) == 0, proposals: make([]*Proposal, 0, len(props))}
	external := committer.Type == SenderTypeNewMemberCommit
	var (
		gce                   *GroupContextExtensionsProposal
		updates               []resolvedProposal
		removes, adds         []*Proposal
		touched               = map[LeafIndex]bool{}
		pskSeen               map[string]struct{}
		addKeys               = map[string]bool{}
		nonDefaultTypesChosen []ProposalType
		customSeen            map[ProposalType]bool
	)
	for _, rp := range props {
		p := rp.proposal
		if err := g.checkProposalInCommit(st, st.tree, p, rp.sender, link); err != nil {
			return nil, err
		}
		out.proposals = append(out.proposals, p)
		switch p.Type {
		case ProposalTypeAdd:
			key := string(p.Add.KeyPackage.LeafNode.SignatureKey)
			if addKeys[key] {
				return nil, invalid("12.2", "two Adds for the same client")
			}
			addKeys[key] = true
			adds = append(adds, p)
		case ProposalTypeUpdate:
			if !rp.byRef {
				return nil, invalid("12.2", "Update sent by value in a commit")
			}
			l := LeafIndex(rp.sender.Index)
			if committer.Type == SenderTypeMember && l == LeafIndex(committer.Index) {
				return nil, invalid("12.2", "commit includes the committer's own Update")
			}
			if touched[l] {
				return nil, invalid("12.2", "several Update or Remove proposals for leaf %d", l)
			}
			touched[l] = true
			updates = append(updates, rp)
			out.pathRequired = true
		case ProposalTypeRemove:
			l := p.Remove.Removed
			if committer.Type == SenderTypeMember && l == LeafIndex(committer.Index) {
				return nil, invalid("12.2", "commit removes the committer")
			}
			if touched[l] {
				return nil, invalid("12.2", "several Update or Remove proposals for leaf %d", l)
			}
			touched[l] = true
			removes = append(removes, p)
			out.pathRequired = true
		case ProposalTypePreSharedKey:
			// The nonce makes every ID unique; compare without it, by
			// map (linear in the number of PSKs, however many).
			id := p.PreSharedKey.PSK
			id.PSKNonce = nil
			idBytes, err := id.Bytes()
			if err != nil {
				return nil, err
			}
			if _, dup := pskSeen[string(idBytes)]; dup {
				return nil, invalid("12.2", "the same PSK twice")
			}
			if pskSeen == nil {
				pskSeen = map[string]struct{}{}
			}
			pskSeen[string(idBytes)] = struct{}{}
			if len(pskSeen) > g.cfg.Limits.maxPSKs() {
				return nil, limitError("12.4", "PSKs per commit", g.cfg.Limits.maxPSKs())
			}
			out.psks = append(out.psks, p.PreSharedKey.PSK)
		case ProposalTypeReInit:
			if len(props) != 1 {
				return nil, invalid("12.2", "ReInit together with other proposals")
			}
			out.reinit = p.ReInit
		case ProposalTypeExternalInit:
			if !external {
				return nil, invalid("12.2", "ExternalInit in a member's commit")
			}
			if out.externalInit != nil {
				return nil, invalid("12.2", "several ExternalInit proposals")
			}
			out.externalInit = p.ExternalInit
			out.pathRequired = true
		case ProposalTypeGroupContextExtensions:
			if gce != nil {
				return nil, invalid("12.2", "several GroupContextExtensions proposals")
			}
			gce = p.GroupContextExtensions
			out.pathRequired = true
		default:
			// Each type is checked against the members once.
			if !customSeen[p.Type] {
				if customSeen == nil {
					customSeen = map[ProposalType]bool{}
				}
				customSeen[p.Type] = true
				nonDefaultTypesChosen = append(nonDefaultTypesChosen, p.Type)
			}
			out.pathRequired = true
		}
	}
	if external {
		if out.externalInit == nil {
			return nil, invalid("12.4.3.2", "external commit without ExternalInit")
		}
		for _, rp := range props {
			switch rp.proposal.Type {
			case ProposalTypeExternalInit, ProposalTypeRemove, ProposalTypePreSharedKey:
			default:
				return nil, invalid("12.4.3.2", "external commit with a proposal of type %d", rp.proposal.Type)
			}
			if rp.byRef {
				return nil, invalid("12.4.3.2", "external commit with a proposal by reference")
			}
		}
		if len(removes) > 1 {
			return nil, invalid("12.4.3.2", "external commit with several Removes")
		}
	}

	tree := out.tree
	me := st.priv.LeafIndex()
	// 1. GroupContextExtensions.
	if gce != nil {
		out.extensions = gce.Extensions
	}
	// 2. Updates.
	for _, rp := range updates {
		l := LeafIndex(rp.sender.Index)
		leaf := rp.proposal.Update.LeafNode
		if err := tree.UpdateLeaf(l, &leaf); err != nil {
			return nil, &ValidationError{Section: "12.1.2", Err: err}
		}
		out.updated = append(out.updated, l)
	}
	// 3. Removes.
	for _, p := range removes {
		l := p.Remove.Removed
		if l == me {
			out.selfRemoved = true
		}
		// mutants:skip equivalent: Removes of blank or repeated leaves are refused before (checkProposalInCommit)
		if err := tree.RemoveLeaf(l); err != nil {
			return nil, &ValidationError{Section: "12.1.3", Err: err}
		}
		out.removed = append(out.removed, l)
	}
	// 4. Adds.
	opts, err := g.validateOptions(st.ctx.GroupID, out.extensions, true)
	if err != nil {
		return nil, err
	}
	for _, p := range adds {
		leaf := p.Add.KeyPackage.LeafNode
		if err := tree.ValidateLeafNode(&leaf, treekem.SourceKeyPackage, 0, opts); err != nil {
			return nil, &ValidationError{Section: "12.1.1", Err: err}
		}
		// The new member supports the group's extensions (§13.4):
		// ValidateOptions.GroupExtensions.
		l, err := tree.AddLeaf(&leaf)
		if err != nil {
			return nil, &ValidationError{Section: "12.1.1", Err: err}
		}
		out.added = append(out.added, l)
		if out.addedKeyPackages == nil {
			out.addedKeyPackages = map[LeafIndex]*KeyPackage{}
		}
		out.addedKeyPackages[l] = &p.Add.KeyPackage
	}
	// A GroupContextExtensions change must suit every member of the new
	// tree, added ones included.
	if gce != nil {
		if err := g.checkGroupContextExtensions(tree, out.extensions); err != nil {
			return nil, err
		}
	}
	// Proposals of a non-default type must be supported by every member
	// who will process the commit: not those it adds or removes (§12.2).
	if len(nonDefaultTypesChosen) > 0 {
		removed := make(map[LeafIndex]bool, len(out.removed))
		for _, l := range out.removed {
			removed[l] = true
		}
		if err := checkCustomProposalsSupport(nonDefaultTypesChosen, st.tree, removed); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkResync checks the Remove of leaf old in an external commit (RFC
// 9420, §12.2, §12.4.3.2): the joiner's new leaf must meet the rules of an
// Update of the removed leaf, so its credential must be a valid successor
// of the removed one's ([Config.ValidateCredentialSuccessor], by default
// the same identity, §5.3.1) and its encryption key must differ (§7.3).
// The rest of §7.3 (group extensions, required capabilities, credential
// types) is checked on the path's leaf as on any. tree is the tree before
// the commit.
func (g *Group) checkResync(tree *treekem.Tree, old LeafIndex, leaf *LeafNode) error {
	prev := tree.Leaf(old)
	if prev == nil {
		return invalid("12.4.3.2", "resync removes blank leaf %d", old)
	}
	if err := g.cfg.credentialSuccessor(&prev.Credential, &leaf.Credential); err != nil {
		return &ValidationError{Section: "12.4.3.2", Err: err}
	}
	if bytes.Equal(prev.EncryptionKey, leaf.EncryptionKey) {
		return &ValidationError{Section: "12.4.3.2", Err: fmt.Errorf("%w: resync leaf keeps the encryption key of removed leaf %d", treekem.ErrDuplicateKey, old)}
	}
	return nil
}
