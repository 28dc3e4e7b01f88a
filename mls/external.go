package mls

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// This file implements what parties outside a group send to it: external
// commits (RFC 9420, §12.4.3.2), proposals from external senders and
// new_member_proposal Adds (§12.1.8).

// ExternalJoinOptions are the optional inputs of [JoinExternal].
type ExternalJoinOptions struct {
	// RatchetTree is the encoded ratchet tree of the group, for when the
	// GroupInfo does not carry a ratchet_tree extension (§12.4.3.3).
	RatchetTree []byte
	// Resync makes the commit also remove this client's earlier leaf in
	// the group: the one holding the same identity as the credential,
	// preferring one with the same signature key (§12.4.3.2). Use it to
	// rejoin after losing the group's state.
	Resync bool
	// PSKs are pre-shared keys to inject (external ones are looked up in
	// the Config's PSKs). A nil nonce is replaced with a fresh one.
	PSKs []PreSharedKeyID
	// Capabilities, ExtensionTypes, ProposalTypes and LeafExtensions are
	// as in [KeyPackageOptions], for the joiner's leaf.
	Capabilities   *Capabilities
	ExtensionTypes []ExtensionType
	ProposalTypes  []ProposalType
	LeafExtensions []Extension
	// AuthenticatedData is sent in the clear with the commit.
	AuthenticatedData []byte
	// GroupExists is as in [JoinOptions]: JoinExternal refuses a group ID
	// this client already holds with [ErrGroupExists]. A client that
	// resyncs after losing its state holds none.
	GroupExists func(groupID []byte) (bool, error)
}

// externalPub returns the external public key of a GroupInfo's
// external_pub extension (RFC 9420, §12.4.3.2).
func externalPub(gi *GroupInfo) ([]byte, error) {
	data, ok := findExtension(gi.Extensions, ExtensionExternalPub)
	if !ok {
		return nil, fmt.Errorf("%w: GroupInfo has no external_pub extension", ErrNotFound)
	}
	var pub []byte
	if err := wire.Parse(data, func(s *cryptobyte.String) bool { return wire.ReadVarintBytes(s, &pub) }); err != nil {
		return nil, malformed("external_pub extension", err)
	}
	return pub, nil
}

// verifyGroupInfo checks a GroupInfo and its ratchet tree as a new member
// must (RFC 9420, §12.4.3.1, which §12.4.3.2 applies to external joins):
// the signature by a non-blank leaf, the tree hash, and the whole tree.
// The caller checks the version and cipher suite.
//
// An outsider's GroupInfo (external is set) is authenticated before its
// tree is decoded. A Welcome's arrives AEAD-protected under the welcome
// secret, so only a member can have built it: its signature is then
// checked beside the decoding of the tree, on another core.
func (g *Group) verifyGroupInfo(gi *GroupInfo, outOfBand []byte, external bool) (*treekem.Tree, error) {
	cs := g.cs
	ctx := &gi.GroupContext
	if treekem.DuplicateExtension(gi.Extensions) || treekem.DuplicateExtension(ctx.Extensions) {
		return nil, invalid("13.4", "duplicate extension")
	}
	data, err := ratchetTreeData(gi, outOfBand)
	if err != nil {
		return nil, err
	}
	// Authenticate before decoding: the signer's key is read out of the
	// encoded tree without building it, and the signature checked, so a
	// forged GroupInfo costs one walk over its bytes and one signature
	// check, not a decoded tree.
	signerKey, err := treekem.LeafSignatureKey(data, gi.Signer)
	if errors.Is(err, treekem.ErrLeafIndexRange) {
		return nil, &ValidationError{Section: "12.4.3.1", Err: fmt.Errorf("%w: GroupInfo signer %d: %w", ErrLeafIndexRange, gi.Signer, err)}
	}
	if errors.Is(err, treekem.ErrBlankLeaf) {
		return nil, invalid("12.4.3.1", "GroupInfo signer %d is a blank leaf", gi.Signer)
	}
	if err != nil {
		return nil, malformed("ratchet tree", err)
	}
	var sigErr chan error
	if external {
		if err := gi.verify(cs, signerKey); err != nil {
			return nil, err
		}
	} else {
		sigErr = make(chan error, 1)
		go func() { sigErr <- gi.verify(cs, signerKey) }()
	}
	parse := treekem.ParseTree
	if !external && outOfBand == nil {
		// A Welcome's tree lies in the GroupInfo decrypted by Join,
		// a buffer nobody else holds: the tree may point into it.
		parse = treekem.ParseTreeInPlace
	}
	tree, err := parse(cs, data)
	if sigErr != nil {
		if serr := <-sigErr; serr != nil {
			return nil, serr
		}
	}
	if err != nil {
		return nil, malformed("ratchet tree", err)
	}
	if !bytes.Equal(tree.TreeHash(), ctx.TreeHash) {
		return nil, invalid("12.4.3.1", "tree hash does not match the GroupInfo")
	}
	vopts, err := g.validateOptions(ctx.GroupID, ctx.Extensions, false)
	if err != nil {
		return nil, err
	}
	// Leaves already in the tree need not list the group's version and
	// suite: §7.3 and §12.4.3.1 do not ask it, and groups of other
	// implementations hold such leaves (the official treekem vectors of
	// suite 7 do). New leaves are held to it.
	vopts.Version = 0
	if err := tree.Validate(vopts); err != nil {
		return nil, &ValidationError{Section: "12.4.3.1", Err: err}
	}
	return tree, nil
}

// JoinExternal joins a group by external commit (RFC 9420, §12.4.3.2), from
// a GroupInfo that carries an external_pub extension (see
// [Group.GroupInfo] and [CommitOptions.ExternalPub]). It verifies the
// GroupInfo as [Join] verifies a Welcome's, then builds the commit: an
// ExternalInit proposal, a Remove of this client's old leaf if
// opts.Resync, the PSKs of opts, and a path from the leftmost blank leaf,
// where the joiner is placed.
//
// It returns the joiner's group, already in the epoch the commit leads to,
// and the commit to send to the group as a PublicMessage. Use the group
// only once the delivery service has accepted the commit; if it rejects it
// (another commit came first), drop the group and try again with a fresh
// GroupInfo.
func JoinExternal(groupInfo *MLSMessage, cred Credential, sig *SignaturePrivateKey, opts *ExternalJoinOptions, cfg *Config) (*Group, *MLSMessage, error) {
	if groupInfo == nil || groupInfo.GroupInfo == nil {
		return nil, nil, fmt.Errorf("%w: not a GroupInfo", ErrUnsupported)
	}
	if opts == nil {
		opts = &ExternalJoinOptions{}
	}
	gi := groupInfo.GroupInfo
	ctx := gi.GroupContext
	cs := ctx.CipherSuite
	if ctx.Version != keyschedule.MLS10 || !cs.Supported() {
		return nil, nil, fmt.Errorf("%w: group version %d, cipher suite %v", ErrUnsupported, ctx.Version, cs)
	}
	if sig == nil || sig.Suite() != cs {
		return nil, nil, fmt.Errorf("mls: signature key is not of cipher suite %v", cs)
	}
	if err := checkGroupIDUnique(opts.GroupExists, ctx.GroupID); err != nil {
		return nil, nil, err
	}
	g := &Group{cs: cs, sigPriv: sig, active: true}
	if cfg != nil {
		g.cfg = *cfg
	}
	tree, err := g.verifyGroupInfo(gi, opts.RatchetTree, true)
	if err != nil {
		return nil, nil, err
	}
	pub, err := externalPub(gi)
	if err != nil {
		return nil, nil, err
	}
	exts := ctx.Extensions

	// The joiner's leaf, before the path fills in its keys.
	caps := defaultCapabilities(cs, &KeyPackageOptions{ExtensionTypes: opts.ExtensionTypes, ProposalTypes: opts.ProposalTypes, LeafExtensions: opts.LeafExtensions})
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	template := &LeafNode{
		SignatureKey: sig.PublicKey(),
		Credential:   cred,
		Capabilities: caps,
		Extensions:   addGREASEExtension(&caps, opts.LeafExtensions),
	}
	if err := checkCapabilitiesListing(cs, template, nil); err != nil {
		return nil, nil, err
	}
	// A joiner must support every extension of the group (§13.4) and
	// meet its required capabilities (§11.1), GREASE values not counting
	// (§13.5); the members check the rest of §7.3 on the leaf the path
	// brings.
	if err := checkOwnSupport(&caps, exts); err != nil {
		return nil, nil, err
	}

	kemOutput, init, err := keyschedule.ExternalInit(cs, pub)
	if err != nil {
		return nil, nil, malformed("external_pub", err)
	}
	defer init.Erase()
	committer := Sender{Type: SenderTypeNewMemberCommit}
	proposals := []*Proposal{{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInitProposal{KEMOutput: kemOutput}}}
	if opts.Resync {
		old, err := findOwnLeaf(tree, &cred, sig.PublicKey())
		if err != nil {
			return nil, nil, err
		}
		proposals = append(proposals, &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: old}})
	}
	for _, id := range opts.PSKs {
		if id.PSKNonce == nil {
			id.PSKNonce = keyschedule.NewPSKNonce(cs)
		}
		proposals = append(proposals, &Proposal{Type: ProposalTypePreSharedKey, PreSharedKey: &PreSharedKeyProposal{PSK: id}})
	}

	// Apply the proposals as the members will, to a state that stands in
	// for the group's current epoch. Its private keys name a leaf outside
	// the tree: the joiner has none yet.
	st := &epochState{
		ctx:        ctx,
		ctxBytes:   ctx.Bytes(),
		extensions: exts,
		tree:       tree,
		priv:       treekem.NewPrivateKeys(cs, LeafIndex(tree.LeafCount()), nil),
	}
	props := make([]resolvedProposal, len(proposals))
	var commit Commit
	for i, p := range proposals {
		props[i] = resolvedProposal{proposal: p, sender: committer}
		commit.Proposals = append(commit.Proposals, ProposalOrRef{Type: ProposalOrRefProposal, Proposal: p})
	}
	apply, err := g.applyProposals(st, props, committer)
	if err != nil {
		return nil, nil, err
	}
	newTree := apply.tree
	me := newTree.LeftmostBlankLeaf()
	path, err := newTree.GenerateUpdatePath(me, template, sig, ctx.GroupID, nil)
	if err != nil {
		return nil, nil, err
	}
	defer path.Erase()
	if len(apply.removed) > 0 {
		// The members will hold the new leaf to the rules of an Update
		// of the removed one (§12.2).
		if err := g.checkResync(tree, apply.removed[0], newTree.Leaf(me)); err != nil {
			return nil, nil, err
		}
	}
	provisional := ctx
	provisional.Epoch++
	provisional.TreeHash = newTree.TreeHash()
	up, err := path.Encrypt(provisional.Bytes())
	if err != nil {
		return nil, nil, err
	}
	commit.Path = up

	ac := &AuthenticatedContent{
		WireFormat: WireFormatPublicMessage,
		Content: FramedContent{
			GroupID:           ctx.GroupID,
			Epoch:             ctx.Epoch,
			Sender:            committer,
			AuthenticatedData: opts.AuthenticatedData,
			ContentType:       ContentTypeCommit,
			Commit:            &commit,
		},
	}
	// mutants:skip sending side: our own signature over our own commit
	if err := signContent(cs, sig, ac, st.ctxBytes); err != nil {
		return nil, nil, err
	}
	input, err := ac.confirmedTranscriptHashInput()
	if err != nil {
		return nil, nil, err
	}
	// The joiner has no interim transcript hash of the current epoch: it
	// is computed from the GroupInfo's confirmation tag (§8.2).
	interimBefore := keyschedule.InterimTranscriptHash(cs, ctx.ConfirmedTranscriptHash, gi.ConfirmationTag)
	newCtx := provisional
	newCtx.ConfirmedTranscriptHash = keyschedule.ConfirmedTranscriptHash(cs, interimBefore, input)
	newCtxBytes := newCtx.Bytes()

	secrets, joiner, pskSecret, err := g.nextEpochSecrets(init, path.CommitSecret(), newCtxBytes, apply.psks)
	if err != nil {
		return nil, nil, err
	}
	joiner.Erase()
	clear(pskSecret)
	ac.Auth.ConfirmationTag = secrets.ConfirmationTag(newCtx.ConfirmedTranscriptHash)
	interim := keyschedule.InterimTranscriptHash(cs, newCtx.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag)
	g.state, err = g.newEpochState(newCtx, newTree, path.PrivateKeys(), secrets, interim)
	if err != nil {
		secrets.Erase()
		return nil, nil, err
	}
	msg := &MLSMessage{
		Version:       MLS10,
		WireFormat:    WireFormatPublicMessage,
		PublicMessage: &PublicMessage{Content: ac.Content, Auth: ac.Auth},
	}
	return g, msg, nil
}

// findOwnLeaf returns the leaf of tree holding the identity of cred,
// preferring one with signature key sigKey.
func findOwnLeaf(tree *treekem.Tree, cred *Credential, sigKey []byte) (LeafIndex, error) {
	if l, ok := tree.FindSignatureKey(sigKey); ok {
		for _, c := range tree.FindIdentity(cred) {
			if c == l {
				return l, nil
			}
		}
	}
	leaves := tree.FindIdentity(cred)
	switch len(leaves) {
	case 0:
		return 0, fmt.Errorf("%w: no leaf of this identity to resync", ErrNotFound)
	case 1:
		return leaves[0], nil
	}
	return 0, fmt.Errorf("mls: %d leaves hold this identity; resync cannot choose", len(leaves))
}

// ExternalSigner sends proposals to groups it is not a member of, as the
// external sender at position Index of their external_senders extension
// (RFC 9420, §12.1.8). Its proposals are PublicMessages without a
// membership tag, signed with Key.
type ExternalSigner struct {
	// Index is the signer's position in the group's external_senders
	// extension.
	Index uint32
	// Key is the private key of the SignatureKey listed there.
	Key *SignaturePrivateKey
}

// errNotExternal is returned for a proposal type that external senders
// may not send (RFC 9420, §12.1.8).
var errNotExternal = errors.New("this proposal type cannot be sent by an external sender")

// Propose signs proposal p for the group groupID in epoch epoch, which
// the signer learns from the delivery service or a GroupInfo. Only Add,
// Remove, PreSharedKey, ReInit and GroupContextExtensions proposals may be
// sent by an external sender. A PreSharedKey proposal with a nil nonce
// gets a fresh one. The group's members cache the proposal; a member
// commits it.
func (s *ExternalSigner) Propose(groupID []byte, epoch uint64, p *Proposal, authenticatedData []byte) (*MLSMessage, error) {
	if s.Key == nil {
		return nil, errors.New("mls: external signer without a key")
	}
	switch p.Type {
	case ProposalTypeAdd, ProposalTypeRemove, ProposalTypePreSharedKey, ProposalTypeReInit, ProposalTypeGroupContextExtensions:
	default:
		return nil, &ValidationError{Section: "12.1.8", Err: fmt.Errorf("%w: type %d", errNotExternal, p.Type)}
	}
	if p.Type == ProposalTypePreSharedKey && p.PreSharedKey != nil && p.PreSharedKey.PSK.PSKNonce == nil {
		q := *p
		psk := *p.PreSharedKey
		psk.PSK.PSKNonce = keyschedule.NewPSKNonce(s.Key.Suite())
		q.PreSharedKey = &psk
		p = &q
	}
	return signExternalContent(s.Key, groupID, epoch, Sender{Type: SenderTypeExternal, Index: s.Index}, p, authenticatedData)
}

// NewMemberProposal returns a proposal, signed by the owner of kp, to add
// kp to the group groupID in epoch epoch (RFC 9420, §12.1.8): a
// new_member_proposal Add. A member who accepts it (see
// [Config.ProposalPolicy]) commits it, and the owner of kp then joins with
// the Welcome, as after any Add.
func NewMemberProposal(kp *KeyPackagePrivate, groupID []byte, epoch uint64, authenticatedData []byte) (*MLSMessage, error) {
	if kp == nil || kp.KeyPackage == nil || kp.SignatureKey == nil {
		return nil, errors.New("mls: incomplete KeyPackagePrivate")
	}
	if !bytes.Equal(kp.SignatureKey.PublicKey(), kp.KeyPackage.LeafNode.SignatureKey) {
		return nil, errors.New("mls: signature key does not match the KeyPackage")
	}
	p := &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp.KeyPackage}}
	return signExternalContent(kp.SignatureKey, groupID, epoch, Sender{Type: SenderTypeNewMemberProposal}, p, authenticatedData)
}

// signExternalContent frames and signs a proposal from a non-member as a
// PublicMessage. The signature does not cover a GroupContext, which a
// non-member does not know (§6.1).
func signExternalContent(key *SignaturePrivateKey, groupID []byte, epoch uint64, sender Sender, p *Proposal, ad []byte) (*MLSMessage, error) {
	ac := &AuthenticatedContent{
		WireFormat: WireFormatPublicMessage,
		Content: FramedContent{
			GroupID:           groupID,
			Epoch:             epoch,
			Sender:            sender,
			AuthenticatedData: ad,
			ContentType:       ContentTypeProposal,
			Proposal:          p,
		},
	}
	if err := signContent(key.Suite(), key, ac, nil); err != nil {
		return nil, err
	}
	return &MLSMessage{
		Version:       MLS10,
		WireFormat:    WireFormatPublicMessage,
		PublicMessage: &PublicMessage{Content: ac.Content, Auth: ac.Auth},
	}, nil
}
