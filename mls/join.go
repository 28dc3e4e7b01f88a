package mls

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/ext"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// KeyPackagePrivate is a KeyPackage with the private keys that go with it:
// the init key a Welcome is encrypted to, the leaf's encryption key, and
// the signature key. It must be kept secret, and deleted once used to join
// (RFC 9420, §16.8), unless the KeyPackage is a last resort one.
type KeyPackagePrivate struct {
	KeyPackage    *KeyPackage
	InitKey       *hpke.PrivateKey
	EncryptionKey *hpke.PrivateKey
	SignatureKey  *hpke.SignaturePrivateKey
}

// JoinOptions are the optional inputs of [Join].
type JoinOptions struct {
	// RatchetTree is the encoded ratchet tree of the group, for when the
	// GroupInfo does not carry a ratchet_tree extension (RFC 9420,
	// §12.4.3.3).
	RatchetTree []byte
	// PreviousGroup is this member's copy of the group that the new one
	// re-creates (RFC 9420, §11.2) or branches from (§11.3). Its
	// resumption PSK is taken from it, and the new group is checked
	// against it. A Welcome with a reinit or branch PSK is rejected
	// without it.
	PreviousGroup *Group
	// GroupExists, if set, reports whether this client already holds a
	// group with the given ID; Join then refuses the Welcome with
	// [ErrGroupExists] (RFC 9420, §12.4.3: the group ID must be unique
	// among the client's groups). [JoinWithStore] sets it from its store
	// when the store also implements [GroupStore].
	GroupExists func(groupID []byte) (bool, error)
}

// ErrGroupExists means a Welcome or GroupInfo names a group ID this client
// already holds (RFC 9420, §12.4.3). It comes wrapped in a
// [ValidationError]. Delete the old group's state first to join again.
var ErrGroupExists = errors.New("mls: a group with this ID already exists")

// checkGroupIDUnique applies exists, if set, to groupID.
func checkGroupIDUnique(exists func([]byte) (bool, error), groupID []byte) error {
	if exists == nil {
		return nil
	}
	held, err := exists(groupID)
	if err != nil {
		return fmt.Errorf("mls: checking the group ID: %w", err)
	}
	if held {
		return &ValidationError{Section: "12.4.3", Err: fmt.Errorf("%w: %x", ErrGroupExists, groupID)}
	}
	return nil
}

// decryptGroupSecrets finds the entry of w for kp and decrypts it.
func decryptGroupSecrets(w *Welcome, kp *KeyPackagePrivate) (*GroupSecrets, error) {
	cs := w.CipherSuite
	ref, err := kp.KeyPackage.Ref()
	if err != nil {
		return nil, err
	}
	for i := range w.Secrets {
		e := &w.Secrets[i]
		if !bytes.Equal(e.NewMember, ref) {
			continue
		}
		pt, err := cs.DecryptWithLabel(kp.InitKey, "Welcome", w.EncryptedGroupInfo,
			e.EncryptedGroupSecrets.KEMOutput, e.EncryptedGroupSecrets.Ciphertext)
		if err != nil {
			return nil, fmt.Errorf("%w: group secrets", ErrDecryption)
		}
		defer clear(pt)
		gs := new(GroupSecrets)
		if err := wire.Parse(pt, gs.unmarshal); err != nil {
			return nil, malformed("group secrets", err)
		}
		return gs, nil
	}
	return nil, ErrNotMember
}

// decryptGroupInfo decrypts the GroupInfo of w with the welcome secret.
func decryptGroupInfo(cs CipherSuite, w *Welcome, ws *keyschedule.WelcomeSecret) (*GroupInfo, error) {
	key, nonce := ws.Key(), ws.Nonce()
	defer clear(key)
	pt, err := cs.AEADOpen(key, nonce, nil, w.EncryptedGroupInfo)
	if err != nil {
		return nil, fmt.Errorf("%w: group info", ErrDecryption)
	}
	// pt is ours: the extensions, the tree among them, point into it
	// rather than into a copy. The fields are those of
	// GroupInfo.unmarshal.
	gi := new(GroupInfo)
	if err := wire.Parse(pt, func(s *cryptobyte.String) bool {
		return gi.GroupContext.Unmarshal(s) &&
			ext.UnmarshalExtensionsInPlace(s, &gi.Extensions) &&
			wire.ReadVarintBytes(s, &gi.ConfirmationTag) &&
			s.ReadUint32((*uint32)(&gi.Signer)) &&
			wire.ReadVarintBytes(s, &gi.Signature)
	}); err != nil {
		return nil, malformed("group info", err)
	}
	return gi, nil
}

// groupInfoTBS returns the signed part of gi.
func (gi *GroupInfo) tbs() ([]byte, error) { return wire.Marshal(gi.marshalTBS) }

const labelGroupInfo = "GroupInfoTBS"

func (gi *GroupInfo) sign(cs CipherSuite, priv *hpke.SignaturePrivateKey) error {
	tbs, err := gi.tbs()
	if err != nil {
		return err
	}
	sig, err := cs.SignWithLabel(priv, labelGroupInfo, tbs)
	if err != nil {
		return err
	}
	gi.Signature = sig
	return nil
}

func (gi *GroupInfo) verify(cs CipherSuite, pub []byte) error {
	// The TBS, which holds the tree, is built in a scratch buffer,
	// verified and dropped.
	var verr error
	if err := wire.Use(gi.marshalTBS, func(tbs []byte) { verr = cs.VerifyWithLabel(pub, labelGroupInfo, tbs, gi.Signature) }); err != nil {
		return malformed("group info", err)
	}
	if verr != nil {
		return fmt.Errorf("%w: group info", ErrInvalidSignature)
	}
	return nil
}

// ratchetTreeData returns the encoded ratchet tree of gi's ratchet_tree
// extension or, failing that, the one given out of band.
func ratchetTreeData(gi *GroupInfo, outOfBand []byte) ([]byte, error) {
	data, ok := findExtension(gi.Extensions, ExtensionRatchetTree)
	if !ok {
		if outOfBand == nil {
			return nil, fmt.Errorf("%w: no ratchet tree in the GroupInfo or the options", ErrNotFound)
		}
		data = outOfBand
	}
	return data, nil
}

// Join joins a group from a Welcome message addressed to kp (RFC 9420,
// §12.4.3.1). It verifies everything a new member must: the GroupInfo's
// signature and confirmation tag, the whole ratchet tree (tree hash, parent
// hashes, every leaf's signature, in parallel), and the path secret if one
// was sent. PSKs named by the Welcome are looked up in cfg.PSKs.
//
// After a successful join, the application must delete kp's private keys
// (RFC 9420, §16.8) unless it is a last resort KeyPackage.
func Join(welcome *MLSMessage, kp *KeyPackagePrivate, opts *JoinOptions, cfg *Config) (*Group, error) {
	if welcome == nil || welcome.Welcome == nil {
		return nil, fmt.Errorf("%w: not a Welcome", ErrUnsupported)
	}
	if opts == nil {
		opts = &JoinOptions{}
	}
	g := &Group{active: true, sigPriv: kp.SignatureKey}
	if cfg != nil {
		g.cfg = *cfg
	}
	w := welcome.Welcome
	cs := w.CipherSuite
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: cipher suite %v", ErrUnsupported, cs)
	}
	if kp.KeyPackage.CipherSuite != cs {
		return nil, fmt.Errorf("%w: welcome cipher suite %v differs from the key package's", ErrUnsupported, cs)
	}
	g.cs = cs

	gs, err := decryptGroupSecrets(w, kp)
	if err != nil {
		return nil, err
	}
	joiner, err := keyschedule.NewJoinerSecret(cs, gs.JoinerSecret)
	clear(gs.JoinerSecret)
	if err != nil {
		return nil, malformed("joiner secret", err)
	}
	defer joiner.Erase()
	for i := range gs.PSKs {
		if err := checkPSKID(cs, &gs.PSKs[i], true); err != nil {
			return nil, err
		}
	}
	if opts.PreviousGroup != nil {
		g.cfg.PSKs = &groupPSKStore{g: opts.PreviousGroup, next: g.cfg.PSKs}
	}
	psks, err := g.lookupPSKs(gs.PSKs)
	if cfg != nil {
		g.cfg.PSKs = cfg.PSKs
	} else {
		g.cfg.PSKs = nil
	}
	if err != nil {
		return nil, err
	}
	pskSecret, err := keyschedule.PSKSecret(cs, psks)
	if err != nil {
		return nil, err
	}
	defer clear(pskSecret)
	ws := joiner.WelcomeSecret(pskSecret)
	gi, err := decryptGroupInfo(cs, w, ws)
	ws.Erase()
	if err != nil {
		return nil, err
	}
	ctx := gi.GroupContext
	if ctx.Version != keyschedule.MLS10 || ctx.CipherSuite != cs {
		return nil, fmt.Errorf("%w: group context version or cipher suite", ErrUnsupported)
	}
	if err := checkGroupIDUnique(opts.GroupExists, ctx.GroupID); err != nil {
		return nil, err
	}
	tree, err := g.verifyGroupInfo(gi, opts.RatchetTree, false)
	if err != nil {
		return nil, err
	}
	if err := checkResumedWelcome(gs.PSKs, &ctx, tree, opts.PreviousGroup); err != nil {
		return nil, err
	}

	// Find our own leaf: the one holding our KeyPackage's leaf node.
	myNode, ok := tree.FindEncryptionKey(kp.KeyPackage.LeafNode.EncryptionKey)
	if !ok || !myNode.IsLeaf() || !bytes.Equal(tree.Leaf(myNode.Leaf()).SignatureKey, kp.KeyPackage.LeafNode.SignatureKey) {
		return nil, invalid("12.4.3.1", "our leaf node is not in the tree")
	}
	me := myNode.Leaf()
	// We must support every extension of the group (§13.4) and meet its
	// required capabilities (§11.1), our GREASE values not counting
	// (§13.5).
	if err := checkOwnSupport(&tree.Leaf(me).Capabilities, ctx.Extensions); err != nil {
		return nil, err
	}
	if !bytes.Equal(kp.EncryptionKey.PublicKey(), kp.KeyPackage.LeafNode.EncryptionKey) {
		return nil, errors.New("mls: KeyPackagePrivate encryption key does not match its KeyPackage")
	}
	priv := treekem.NewPrivateKeys(cs, me, kp.EncryptionKey)
	if gs.PathSecret != nil {
		priv, _, err = tree.ImportPathSecret(priv, gi.Signer, gs.PathSecret)
		clear(gs.PathSecret)
		if err != nil {
			return nil, &ValidationError{Section: "12.4.3.1", Err: err}
		}
	}

	ctxBytes := ctx.Bytes()
	es := joiner.EpochSecret(pskSecret, ctxBytes)
	secrets := es.Derive()
	es.Erase()
	if !secrets.VerifyConfirmationTag(ctx.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		secrets.Erase()
		return nil, fmt.Errorf("%w: confirmation tag", ErrDecryption)
	}
	interim := keyschedule.InterimTranscriptHash(cs, ctx.ConfirmedTranscriptHash, gi.ConfirmationTag)
	g.state, err = g.newEpochState(ctx, tree, priv, secrets, interim)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// checkPSKID checks the rules of RFC 9420, §8.4 and §12.1.4 on a PSK ID:
// a known type, a nonce of KDF.Nh bytes, and for resumption PSKs a usage
// allowed in this context (application in proposals; any in a Welcome,
// which may start a ReInit or branch group).
func checkPSKID(cs CipherSuite, id *PreSharedKeyID, inWelcome bool) error {
	if len(id.PSKNonce) != cs.HashSize() {
		return invalid("8.4", "psk_nonce of %d bytes", len(id.PSKNonce))
	}
	switch id.PSKType {
	case keyschedule.PSKTypeExternal:
	case keyschedule.PSKTypeResumption:
		if id.Usage < keyschedule.ResumptionPSKUsageApplication || id.Usage > keyschedule.ResumptionPSKUsageBranch {
			return invalid("8.4", "resumption PSK usage %d", id.Usage)
		}
		if !inWelcome && id.Usage != keyschedule.ResumptionPSKUsageApplication {
			return invalid("12.1.4", "PreSharedKey proposal with resumption usage %d", id.Usage)
		}
	default:
		return invalid("8.4", "PSK type %d", id.PSKType)
	}
	return nil
}
