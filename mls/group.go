package mls

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Config holds the application's choices for a [Group]. The zero value is
// usable: every field has a documented default.
type Config struct {
	// Now returns the current time, for KeyPackage lifetimes. The default
	// is time.Now. Nothing in this package reads the clock otherwise.
	Now func() time.Time
	// PSKs supplies external and resumption pre-shared keys (RFC 9420,
	// §8.4). Nil means no PSKs beyond the group's own resumption PSKs.
	PSKs PSKStore
	// PastEpochs is how many past epochs' decryption keys are kept for
	// late application messages. Zero selects DefaultPastEpochs; a
	// negative value keeps none.
	PastEpochs int
	// MaxForwardDistance and OutOfOrderTolerance bound the secret tree's
	// ratchets (see [keyschedule.Config]).
	MaxForwardDistance  int
	OutOfOrderTolerance int
	// ValidateCredential, if set, is called for every new or changed leaf
	// and every sender's credential; an error rejects the message.
	ValidateCredential func(cred *Credential, signatureKey []byte) error
	// ValidateCredentialSuccessor is called whenever a member's leaf is
	// replaced, with the credential of the old and of the new leaf: for an
	// Update proposal, for the leaf of a commit's UpdatePath, and for the
	// leaf of an external commit that removes the joiner's earlier leaf
	// (resync). It is where the application checks that the new
	// credential's identifiers are a valid successor of the old ones (RFC
	// 9420, §5.3.1); the new credential also goes through
	// ValidateCredential. An error rejects the message, with a
	// [ValidationError] of section 5.3.1 that matches
	// [treekem.ErrCredential].
	//
	// If nil, [SameIdentity] is used: the credential type and identity
	// may not change. Applications that let members renew X.509
	// certificates or change identities must set it.
	ValidateCredentialSuccessor func(old, new *Credential) error
	// MaxLeafLifetime is the longest total lifetime (not_after minus
	// not_before) accepted for a leaf node that carries one, that is one
	// from a KeyPackage (RFC 9420, §7.2 asks every application to choose
	// such a maximum). It applies to KeyPackages in Add proposals, to the
	// leaves of a tree received when joining, and to this member's own
	// leaf. Zero selects DefaultMaxLeafLifetime. A negative value accepts
	// any lifetime; use it only for peers whose KeyPackages never expire
	// (some implementations issue lifetimes of 0 to 2^64-1 by default).
	MaxLeafLifetime time.Duration
	// ProposalPolicy, if set, is called for each proposal before it is
	// cached or committed; an error rejects the proposal (and a commit
	// carrying it).
	ProposalPolicy func(p *Proposal, sender Sender) error
	// AcceptNonMemberProposal decides whether [Group.Commit] commits a
	// cached proposal from a non-member: an external sender of the
	// group's external_senders extension, or a new_member_proposal Add
	// (RFC 9420, §12.1.8). Nil, the default, accepts none: anyone who
	// knows the group ID and epoch can send such a proposal. Refused ones
	// stay cached (another member may commit them) and are listed in
	// [PendingCommit.Dropped] matching [ErrNonMemberProposal]. It does not
	// apply to commits received from other members: use ProposalPolicy to
	// reject those.
	AcceptNonMemberProposal func(p *Proposal, sender Sender) error
	// MaxCachedProposals bounds the proposals cached in one epoch; further
	// ones are refused with [ErrProposalCacheFull]. Zero selects
	// [DefaultMaxCachedProposals].
	MaxCachedProposals int
	// Handshake says whether proposals and commits are sent as
	// PublicMessage (the default) or PrivateMessage.
	Handshake WireFormatPolicy
	// PaddingBlock pads the content of every PrivateMessage to a multiple
	// of this many bytes, to hide its exact length. Zero selects
	// DefaultPaddingBlock; 1 turns padding off.
	PaddingBlock int
	// ResumptionPSKEpochs is how many epochs' resumption PSKs the group
	// keeps for PSK proposals. Zero selects DefaultResumptionPSKEpochs.
	ResumptionPSKEpochs int
	// Limits bounds counts RFC 9420 leaves open (see [Limits]).
	Limits Limits
}

// Defaults of [Config].
const (
	DefaultPastEpochs          = 3
	DefaultResumptionPSKEpochs = 8
	DefaultPaddingBlock        = 32
	// DefaultMaxLeafLifetime is 13 weeks: it accepts this package's own
	// KeyPackages ([DefaultKeyPackageLifetime] plus an hour for clock
	// skew) and those of implementations with a similar default.
	DefaultMaxLeafLifetime = 13 * 7 * 24 * time.Hour
)

// maxLeafLifetime returns the configured maximum, zero for none.
func (c *Config) maxLeafLifetime() time.Duration {
	switch {
	case c.MaxLeafLifetime < 0:
		return 0
	case c.MaxLeafLifetime == 0:
		return DefaultMaxLeafLifetime
	}
	return c.MaxLeafLifetime
}

// credentialSuccessor checks that new may replace old in a member's leaf
// with the application's hook, or [SameIdentity].
func (c *Config) credentialSuccessor(old, new *Credential) error {
	check := c.ValidateCredentialSuccessor
	if check == nil {
		check = SameIdentity
	}
	if err := check(old, new); err != nil {
		return &ValidationError{Section: "5.3.1", Err: fmt.Errorf("%w: credential is not a valid successor: %w", treekem.ErrCredential, err)}
	}
	return nil
}

// ErrIdentityChanged is returned by [SameIdentity].
var ErrIdentityChanged = errors.New("mls: credential type or identity changed")

// SameIdentity is the default [Config.ValidateCredentialSuccessor]: it
// accepts new as a successor of old only if both have the same credential
// type and the same identity: the same identity bytes for a basic
// credential, the same end-entity certificate for an X.509 one, the same
// data for any other type. Its errors match [ErrIdentityChanged].
func SameIdentity(old, new *Credential) error {
	if old.Type != new.Type {
		return fmt.Errorf("%w: credential type %d replaced by %d", ErrIdentityChanged, old.Type, new.Type)
	}
	var a, b []byte
	switch old.Type {
	case CredentialBasic:
		a, b = old.Identity, new.Identity
	case CredentialX509:
		if len(old.Certificates) > 0 {
			a = old.Certificates[0]
		}
		if len(new.Certificates) > 0 {
			b = new.Certificates[0]
		}
	default:
		a, b = old.Data, new.Data
	}
	if !bytes.Equal(a, b) {
		return fmt.Errorf("%w: identity differs", ErrIdentityChanged)
	}
	return nil
}

func (c *Config) now() time.Time {
	if c != nil && c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) pastEpochs() int {
	switch {
	case c.PastEpochs < 0:
		return 0
	case c.PastEpochs == 0:
		return DefaultPastEpochs
	}
	return c.PastEpochs
}

func (c *Config) resumptionEpochs() int {
	if c.ResumptionPSKEpochs <= 0 {
		return DefaultResumptionPSKEpochs
	}
	return c.ResumptionPSKEpochs
}

func (c *Config) secretTreeConfig() *keyschedule.Config {
	return &keyschedule.Config{MaxForwardDistance: c.MaxForwardDistance, OutOfOrderTolerance: c.OutOfOrderTolerance}
}

// PSKStore supplies pre-shared keys the application holds (RFC 9420, §8.4).
// Both methods return an error matching [ErrNotFound] for an unknown key.
type PSKStore interface {
	// ExternalPSK returns the external PSK with the given psk_id.
	ExternalPSK(id []byte) ([]byte, error)
	// ResumptionPSK returns the resumption_psk of epoch of the group
	// groupID, for groups and epochs the Group itself no longer holds.
	ResumptionPSK(groupID []byte, epoch uint64) ([]byte, error)
}

// cachedProposal is a proposal received by reference in the current epoch.
type cachedProposal struct {
	ref      ProposalRef
	proposal *Proposal
	sender   Sender
}

// epochState is everything a member holds for one epoch. A staged commit
// builds a new one; nothing in an epochState is modified once it is the
// group's current state, except the secret tree's ratchets and the
// proposal cache.
type epochState struct {
	ctx        GroupContext
	ctxBytes   []byte
	extensions []Extension // ctx.Extensions in this package's type
	tree       *treekem.Tree
	priv       *treekem.PrivateKeys
	secrets    *keyschedule.EpochSecrets
	framer     *framer
	interim    []byte
	proposals  []cachedProposal
	// proposalIndex maps a cached proposal's reference to its index in
	// proposals (see findProposal).
	proposalIndex map[string]int
}

// provisionalContext returns the GroupContext of the epoch after st with
// extensions exts, before the tree hash and confirmed transcript hash of the
// new epoch are known (RFC 9420, §12.4.1, §12.4.2): the caller sets them.
func (st *epochState) provisionalContext(exts []Extension) GroupContext {
	return GroupContext{
		Version:                 st.ctx.Version,
		CipherSuite:             st.ctx.CipherSuite,
		GroupID:                 st.ctx.GroupID,
		Epoch:                   st.ctx.Epoch + 1,
		ConfirmedTranscriptHash: st.ctx.ConfirmedTranscriptHash,
		Extensions:              exts,
	}
}

// pastEpoch is what is kept of an earlier epoch to read late messages.
type pastEpoch struct {
	epoch    uint64
	framer   *framer
	tree     *treekem.Tree
	ctxBytes []byte
}

// Group is one member's view of an MLS group: the state machine of RFC
// 9420. It performs no I/O. Methods that receive messages validate them
// fully before changing anything; a commit becomes the next epoch only when
// its staged result is merged.
//
// A Group is not safe for concurrent use.
type Group struct {
	cfg     Config
	cs      CipherSuite
	sigPriv *hpke.SignaturePrivateKey
	state   *epochState
	past    []*pastEpoch
	// resumption holds the resumption PSKs of recent epochs, newest last.
	resumption []resumptionPSK
	active     bool
	// pendingUpdates holds the leaf private keys of this member's Update
	// proposals of the current epoch.
	pendingUpdates []*hpke.PrivateKey
	// reinit is the ReInit proposal of the commit that started the
	// current epoch, once merged: the group then waits to be re-created
	// (RFC 9420, §11.2) and sends nothing more.
	reinit *ReInitProposal
	// store tracks what of the group is in its [GroupStore] (records.go).
	store *persistence
}

type resumptionPSK struct {
	epoch  uint64
	secret []byte
}

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.cs }

// GroupID returns the group's ID. The caller must not modify it.
func (g *Group) GroupID() []byte { return g.state.ctx.GroupID }

// Epoch returns the current epoch.
func (g *Group) Epoch() uint64 { return g.state.ctx.Epoch }

// Context returns a copy of the current GroupContext.
func (g *Group) Context() GroupContext {
	c := g.state.ctx
	return c
}

// Extensions returns the group's extensions. The caller must not modify
// them.
func (g *Group) Extensions() []Extension { return g.state.extensions }

// TreeHash returns the tree hash of the current epoch.
func (g *Group) TreeHash() []byte { return g.state.ctx.TreeHash }

// EpochAuthenticator returns the epoch authenticator of the current epoch
// (RFC 9420, §8.7). Members compare it out of band to detect forks.
func (g *Group) EpochAuthenticator() []byte { return g.state.secrets.EpochAuthenticator() }

// Export derives a secret of length bytes for the application from the
// current epoch (MLS-Exporter, RFC 9420, §8.5).
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	return g.state.secrets.Export(label, context, length)
}

// OwnLeafIndex returns this member's leaf index.
func (g *Group) OwnLeafIndex() LeafIndex { return g.state.priv.LeafIndex() }

// Active reports whether this member is still in the group: false once a
// commit removing it has been merged.
func (g *Group) Active() bool { return g.active }

// Member is one member of the group as seen in the ratchet tree.
type Member struct {
	Index        LeafIndex
	Credential   Credential
	SignatureKey []byte
}

// Members returns the group's members in leaf order.
func (g *Group) Members() []Member {
	if g.needTree() != nil {
		return nil // records corrupted since OpenGroup; other calls return the error
	}
	var out []Member
	for i, l := range g.state.tree.Leaves() {
		out = append(out, Member{Index: i, Credential: l.Credential, SignatureKey: l.SignatureKey})
	}
	return out
}

// MemberCount returns the number of members.
func (g *Group) MemberCount() int {
	if g.needTree() != nil {
		return 0
	}
	return g.state.tree.MemberCount()
}

// RatchetTree returns the encoded ratchet tree of the current epoch, for
// sending to joiners out of band (RFC 9420, §12.4.3.3).
func (g *Group) RatchetTree() []byte {
	if g.needTree() != nil {
		return nil
	}
	return g.state.tree.Bytes()
}

// newEpochState builds the state of an epoch from its context, tree,
// private keys and key-schedule secrets; it moves the encryption secret
// into the epoch's secret tree.
func (g *Group) newEpochState(ctx GroupContext, tree *treekem.Tree, priv *treekem.PrivateKeys, secrets *keyschedule.EpochSecrets, interim []byte) (*epochState, error) {
	st, err := secrets.SecretTree(tree.LeafCount(), g.cfg.secretTreeConfig())
	if err != nil {
		return nil, err
	}
	ctxBytes := ctx.Bytes()
	return &epochState{
		ctx:        ctx,
		ctxBytes:   ctxBytes,
		extensions: ctx.Extensions,
		tree:       tree,
		priv:       priv,
		secrets:    secrets,
		interim:    interim,
		// senderDataSecret is a copy: the epoch's secrets are erased when
		// the epoch ends, but a kept past epoch still reads late messages.
		framer: &framer{
			cs:               g.cs,
			groupID:          ctx.GroupID,
			epoch:            ctx.Epoch,
			groupContext:     ctxBytes,
			membershipKey:    secrets.MembershipKey(),
			senderDataSecret: bytes.Clone(secrets.SenderDataSecret()),
			secretTree:       st,
		},
	}, nil
}

// validateOptions returns the leaf validation options of the group with
// extensions exts.
func (g *Group) validateOptions(groupID []byte, exts []Extension, checkLifetime bool) (*treekem.ValidateOptions, error) {
	opts := &treekem.ValidateOptions{GroupID: groupID}
	if data, ok := findExtension(exts, ExtensionRequiredCapabilities); ok {
		rc, err := unmarshalRequiredCapabilities(data)
		if err != nil {
			return nil, err
		}
		opts.RequiredCapabilities = rc
	}
	if checkLifetime {
		opts.Now = g.cfg.now
	}
	// Leaves entering the group must list its version and cipher suite
	// and support its extensions (§7.2, §11.1, §13.4).
	opts.Version = MLS10
	opts.GroupExtensions = treekem.ExtensionTypes(exts)
	opts.MaxLifetime = g.cfg.maxLeafLifetime()
	if v := g.cfg.ValidateCredential; v != nil {
		opts.Credential = func(_ LeafIndex, n *LeafNode) error { return v(&n.Credential, n.SignatureKey) }
	}
	opts.Successor = func(_ LeafIndex, old, new *LeafNode) error {
		return g.cfg.credentialSuccessor(&old.Credential, &new.Credential)
	}
	return opts, nil
}

// nextEpochSecrets runs the key schedule of the epoch a commit leads to
// (RFC 9420, §8) from the init secret, the commit secret (nil for none), the
// serialized GroupContext of the new epoch and the commit's PSKs. It erases
// init. The caller erases the returned joiner secret and PSK secret, which
// a committer also needs for the Welcome.
func (g *Group) nextEpochSecrets(init *keyschedule.InitSecret, commitSecret, newCtx []byte, pskIDs []PreSharedKeyID) (*keyschedule.EpochSecrets, *keyschedule.JoinerSecret, []byte, error) {
	joiner := init.JoinerSecret(commitSecret, newCtx)
	init.Erase()
	psks, err := g.lookupPSKs(pskIDs)
	if err != nil {
		joiner.Erase()
		return nil, nil, nil, err
	}
	pskSecret, err := keyschedule.PSKSecret(g.cs, psks)
	if err != nil {
		joiner.Erase()
		return nil, nil, nil, err
	}
	es := joiner.EpochSecret(pskSecret, newCtx)
	secrets := es.Derive()
	es.Erase()
	return secrets, joiner, pskSecret, nil
}

// lookupPSKs returns the PSKs named by ids, with their secrets.
func (g *Group) lookupPSKs(ids []PreSharedKeyID) ([]keyschedule.PSK, error) {
	out := make([]keyschedule.PSK, 0, len(ids))
	for _, id := range ids {
		secret, err := g.lookupPSK(&id)
		if err != nil {
			return nil, err
		}
		out = append(out, keyschedule.PSK{ID: id, Secret: secret})
	}
	return out, nil
}

func (g *Group) lookupPSK(id *PreSharedKeyID) ([]byte, error) {
	switch id.PSKType {
	case keyschedule.PSKTypeExternal:
		if g.cfg.PSKs == nil {
			return nil, fmt.Errorf("%w: external PSK %x", ErrNotFound, id.PSKID)
		}
		s, err := g.cfg.PSKs.ExternalPSK(id.PSKID)
		if err != nil {
			return nil, fmt.Errorf("%w: external PSK %x: %w", ErrNotFound, id.PSKID, err)
		}
		return s, nil
	case keyschedule.PSKTypeResumption:
		if g.state != nil && bytes.Equal(id.PSKGroupID, g.state.ctx.GroupID) {
			if id.PSKEpoch == g.state.ctx.Epoch {
				return g.state.secrets.ResumptionPSK(), nil
			}
			for _, r := range g.resumption {
				if r.epoch == id.PSKEpoch {
					return r.secret, nil
				}
			}
		}
		if g.cfg.PSKs == nil {
			return nil, fmt.Errorf("%w: resumption PSK of epoch %d", ErrNotFound, id.PSKEpoch)
		}
		s, err := g.cfg.PSKs.ResumptionPSK(id.PSKGroupID, id.PSKEpoch)
		if err != nil {
			return nil, fmt.Errorf("%w: resumption PSK of epoch %d: %w", ErrNotFound, id.PSKEpoch, err)
		}
		return s, nil
	}
	return nil, invalid("8.4", "unknown PSK type %d", id.PSKType)
}

// ErrInactive is returned by operations on a group this member is no
// longer part of (after merging a commit that removed it).
var ErrInactive = errors.New("mls: this member is no longer in the group")
