package main

import (
	"bytes"
	"context"
	"errors"
	"sync"

	"golang.org/x/crypto/cryptobyte"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/microchat/e2ee/examples/interop/mlsclient"
	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/treekem"
)

// server implements the MLSClient service of the MLS interop harness with
// the public API of package mls. It holds any number of clients' states:
// group states, pending KeyPackages (transactions), pending reinits and
// external signers, each named by a number from one counter, so that a
// StorePSK id can name a state or a transaction.
type server struct {
	mlsclient.UnimplementedMLSClientServer

	mu       sync.Mutex
	next     uint32
	states   map[uint32]*state
	txs      map[uint32]*transaction
	reinits  map[uint32]*reinit
	signers  map[uint32]*mls.ExternalSigner
	signerCS map[uint32]mls.CipherSuite
}

func newServer() *server {
	return &server{
		states: map[uint32]*state{}, txs: map[uint32]*transaction{}, reinits: map[uint32]*reinit{},
		signers: map[uint32]*mls.ExternalSigner{}, signerCS: map[uint32]mls.CipherSuite{},
	}
}

// state is one member's group state.
type state struct {
	g       *mls.Group
	cfg     *mls.Config
	psks    pskStore
	encrypt bool
	// pending is this member's commit, merged when the harness says so.
	pending *mls.PendingCommit
	// sent holds the proposals this member sent in the current epoch, which
	// it has cached already and must not process again.
	sent map[string]bool
}

// transaction is a KeyPackage waiting for its Welcome.
type transaction struct {
	kp   *mls.KeyPackagePrivate
	psks pskStore
}

// reinit is a member between a ReInit commit and the new group.
type reinit struct {
	old *mls.Group
	st  *state
	kp  *mls.KeyPackagePrivate // this member's KeyPackage in the new group
}

// pskStore serves the external PSKs installed with StorePSK.
type pskStore map[string][]byte

func (s pskStore) ExternalPSK(id []byte) ([]byte, error) {
	if v, ok := s[string(id)]; ok {
		return v, nil
	}
	return nil, mls.ErrNotFound
}

func (s pskStore) ResumptionPSK([]byte, uint64) ([]byte, error) { return nil, mls.ErrNotFound }

// newConfig returns the configuration of a member's groups.
func newConfig(psks pskStore, encrypt bool) *mls.Config {
	cfg := &mls.Config{PSKs: psks, ResumptionPSKEpochs: 64,
		// The harness hands a committer the proposals of external signers
		// and new members it wants committed; an application would check
		// who sent them here.
		AcceptNonMemberProposal: func(*mls.Proposal, mls.Sender) error { return nil }}
	if encrypt {
		cfg.Handshake = mls.HandshakePrivate
	}
	return cfg
}

func (s *server) id() uint32 {
	s.next++
	return s.next
}

func (s *server) addState(st *state) uint32 {
	if st.sent == nil {
		st.sent = map[string]bool{}
	}
	id := s.id()
	s.states[id] = st
	return id
}

func (s *server) state(id uint32) (*state, error) {
	st, ok := s.states[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no state %d", id)
	}
	return st, nil
}

// fail turns a library error into a gRPC error.
func fail(what string, err error) error {
	return status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
}

func suite(id uint32) (mls.CipherSuite, error) {
	cs := mls.CipherSuite(id)
	if id > 0xffff || !cs.Supported() {
		return 0, status.Errorf(codes.InvalidArgument, "unsupported cipher suite %d", id)
	}
	return cs, nil
}

func basic(identity []byte) mls.Credential {
	return mls.Credential{Type: mls.CredentialBasic, Identity: bytes.Clone(identity)}
}

func encode(m *mls.MLSMessage) ([]byte, error) {
	if m == nil {
		return nil, nil
	}
	return m.Bytes()
}

func parse(what string, data []byte) (*mls.MLSMessage, error) {
	m, err := mls.ParseMessage(data)
	if err != nil {
		return nil, fail(what, err)
	}
	return m, nil
}

func (s *server) Name(context.Context, *mlsclient.NameRequest) (*mlsclient.NameResponse, error) {
	return &mlsclient.NameResponse{Name: "e2ee"}, nil
}

func (s *server) SupportedCiphersuites(context.Context, *mlsclient.SupportedCiphersuitesRequest) (*mlsclient.SupportedCiphersuitesResponse, error) {
	var out []uint32
	for _, cs := range hpke.CipherSuites() {
		out = append(out, uint32(cs))
	}
	return &mlsclient.SupportedCiphersuitesResponse{Ciphersuites: out}, nil
}

func (s *server) CreateGroup(_ context.Context, req *mlsclient.CreateGroupRequest) (*mlsclient.CreateGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := suite(req.CipherSuite)
	if err != nil {
		return nil, err
	}
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	psks := pskStore{}
	cfg := newConfig(psks, req.EncryptHandshake)
	g, err := mls.NewGroup(cs, basic(req.Identity), sig, &mls.GroupOptions{GroupID: bytes.Clone(req.GroupId)}, cfg)
	if err != nil {
		return nil, fail("creating the group", err)
	}
	return &mlsclient.CreateGroupResponse{StateId: s.addState(&state{g: g, cfg: cfg, psks: psks, encrypt: req.EncryptHandshake})}, nil
}

func (s *server) newTransaction(cs mls.CipherSuite, identity []byte, sig *mls.SignaturePrivateKey) (uint32, *mls.KeyPackagePrivate, error) {
	var err error
	if sig == nil {
		if sig, err = cs.GenerateSignatureKey(); err != nil {
			return 0, nil, err
		}
	}
	kp, err := mls.GenerateKeyPackage(cs, basic(identity), sig, nil)
	if err != nil {
		return 0, nil, fail("creating a KeyPackage", err)
	}
	id := s.id()
	s.txs[id] = &transaction{kp: kp, psks: pskStore{}}
	return id, kp, nil
}

func keyPackageBytes(kp *mls.KeyPackagePrivate) ([]byte, error) {
	return (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp.KeyPackage}).Bytes()
}

func (s *server) CreateKeyPackage(_ context.Context, req *mlsclient.CreateKeyPackageRequest) (*mlsclient.CreateKeyPackageResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := suite(req.CipherSuite)
	if err != nil {
		return nil, err
	}
	id, kp, err := s.newTransaction(cs, req.Identity, nil)
	if err != nil {
		return nil, err
	}
	data, err := keyPackageBytes(kp)
	if err != nil {
		return nil, err
	}
	return &mlsclient.CreateKeyPackageResponse{
		TransactionId: id, KeyPackage: data,
		InitPriv: kp.InitKey.Bytes(), EncryptionPriv: kp.EncryptionKey.Bytes(), SignaturePriv: kp.SignatureKey.Bytes(),
	}, nil
}

func (s *server) JoinGroup(_ context.Context, req *mlsclient.JoinGroupRequest) (*mlsclient.JoinGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, ok := s.txs[req.TransactionId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no transaction %d", req.TransactionId)
	}
	welcome, err := parse("welcome", req.Welcome)
	if err != nil {
		return nil, err
	}
	cfg := newConfig(tx.psks, req.EncryptHandshake)
	g, err := mls.Join(welcome, tx.kp, &mls.JoinOptions{RatchetTree: req.RatchetTree}, cfg)
	if err != nil {
		return nil, fail("joining", err)
	}
	delete(s.txs, req.TransactionId)
	id := s.addState(&state{g: g, cfg: cfg, psks: tx.psks, encrypt: req.EncryptHandshake})
	return &mlsclient.JoinGroupResponse{StateId: id, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *server) ExternalJoin(_ context.Context, req *mlsclient.ExternalJoinRequest) (*mlsclient.ExternalJoinResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gi, err := parse("group info", req.GroupInfo)
	if err != nil {
		return nil, err
	}
	if gi.GroupInfo == nil {
		return nil, status.Error(codes.InvalidArgument, "group_info is not a GroupInfo")
	}
	cs := gi.GroupInfo.GroupContext.CipherSuite
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	psks := pskStore{}
	opts := &mls.ExternalJoinOptions{RatchetTree: req.RatchetTree, Resync: req.RemovePrior}
	for _, p := range req.Psks {
		psks[string(p.PskId)] = bytes.Clone(p.PskSecret)
		opts.PSKs = append(opts.PSKs, mls.PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: bytes.Clone(p.PskId)})
	}
	cfg := newConfig(psks, req.EncryptHandshake)
	g, commit, err := mls.JoinExternal(gi, basic(req.Identity), sig, opts, cfg)
	if err != nil {
		return nil, fail("joining by external commit", err)
	}
	data, err := commit.Bytes()
	if err != nil {
		return nil, err
	}
	id := s.addState(&state{g: g, cfg: cfg, psks: psks, encrypt: req.EncryptHandshake})
	return &mlsclient.ExternalJoinResponse{StateId: id, Commit: data, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *server) GroupInfo(_ context.Context, req *mlsclient.GroupInfoRequest) (*mlsclient.GroupInfoResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	gi, err := st.g.GroupInfo(&mls.GroupInfoOptions{RatchetTreeOutOfBand: req.ExternalTree, ExternalPub: true})
	if err != nil {
		return nil, fail("group info", err)
	}
	data, err := gi.Bytes()
	if err != nil {
		return nil, err
	}
	resp := &mlsclient.GroupInfoResponse{GroupInfo: data}
	if req.ExternalTree {
		resp.RatchetTree = st.g.RatchetTree()
	}
	return resp, nil
}

func (s *server) StateAuth(_ context.Context, req *mlsclient.StateAuthRequest) (*mlsclient.StateAuthResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	return &mlsclient.StateAuthResponse{StateAuthSecret: st.g.EpochAuthenticator()}, nil
}

func (s *server) Export(_ context.Context, req *mlsclient.ExportRequest) (*mlsclient.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	out, err := st.g.Export(req.Label, req.Context, int(req.KeyLength))
	if err != nil {
		return nil, fail("export", err)
	}
	return &mlsclient.ExportResponse{ExportedSecret: out}, nil
}

func (s *server) Protect(_ context.Context, req *mlsclient.ProtectRequest) (*mlsclient.ProtectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	m, err := st.g.EncryptApplication(req.Plaintext, req.AuthenticatedData)
	if err != nil {
		return nil, fail("protect", err)
	}
	data, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return &mlsclient.ProtectResponse{Ciphertext: data}, nil
}

func (s *server) Unprotect(_ context.Context, req *mlsclient.UnprotectRequest) (*mlsclient.UnprotectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	m, err := parse("ciphertext", req.Ciphertext)
	if err != nil {
		return nil, err
	}
	res, err := st.g.Process(m)
	if err != nil {
		return nil, fail("unprotect", err)
	}
	if res.ContentType != mls.ContentTypeApplication {
		return nil, status.Error(codes.InvalidArgument, "not an application message")
	}
	return &mlsclient.UnprotectResponse{AuthenticatedData: res.AuthenticatedData, Plaintext: res.ApplicationData}, nil
}

func (s *server) StorePSK(_ context.Context, req *mlsclient.StorePSKRequest) (*mlsclient.StorePSKResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var psks pskStore
	if st, ok := s.states[req.StateOrTransactionId]; ok {
		psks = st.psks
	} else if tx, ok := s.txs[req.StateOrTransactionId]; ok {
		psks = tx.psks
	} else {
		return nil, status.Errorf(codes.NotFound, "no state or transaction %d", req.StateOrTransactionId)
	}
	psks[string(req.PskId)] = bytes.Clone(req.PskSecret)
	return &mlsclient.StorePSKResponse{}, nil
}

// proposed records a proposal this member sent and returns it.
func (st *state) proposed(m *mls.MLSMessage, err error) (*mlsclient.ProposalResponse, error) {
	if err != nil {
		return nil, fail("proposal", err)
	}
	data, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	st.sent[string(data)] = true
	return &mlsclient.ProposalResponse{Proposal: data}, nil
}

func (s *server) AddProposal(_ context.Context, req *mlsclient.AddProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	kp, err := keyPackage(req.KeyPackage)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposeAdd(kp))
}

func keyPackage(data []byte) (*mls.KeyPackage, error) {
	m, err := parse("key package", data)
	if err != nil {
		return nil, err
	}
	if m.KeyPackage == nil {
		return nil, status.Error(codes.InvalidArgument, "key_package is not a KeyPackage")
	}
	return m.KeyPackage, nil
}

func (s *server) UpdateProposal(_ context.Context, req *mlsclient.UpdateProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposeUpdate())
}

// leafOf finds the member whose basic credential holds identity.
func leafOf(g *mls.Group, identity []byte) (mls.LeafIndex, error) {
	for _, m := range g.Members() {
		if bytes.Equal(m.Credential.Identity, identity) {
			return m.Index, nil
		}
	}
	return 0, status.Errorf(codes.NotFound, "no member %q", identity)
}

func (s *server) RemoveProposal(_ context.Context, req *mlsclient.RemoveProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	leaf, err := leafOf(st.g, req.RemovedId)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposeRemove(leaf))
}

func externalPSK(id []byte) mls.PreSharedKeyID {
	return mls.PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: bytes.Clone(id)}
}

func resumptionPSK(groupID []byte, epoch uint64) mls.PreSharedKeyID {
	return mls.PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageApplication,
		PSKGroupID: bytes.Clone(groupID), PSKEpoch: epoch}
}

func (s *server) ExternalPSKProposal(_ context.Context, req *mlsclient.ExternalPSKProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposePSK(externalPSK(req.PskId)))
}

func (s *server) ResumptionPSKProposal(_ context.Context, req *mlsclient.ResumptionPSKProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposePSK(resumptionPSK(st.g.GroupID(), req.EpochId)))
}

func extensions(in []*mlsclient.Extension) ([]mls.Extension, error) {
	out := []mls.Extension{}
	for _, e := range in {
		if e.ExtensionType > 0xffff {
			return nil, status.Errorf(codes.InvalidArgument, "extension type %d is not a uint16", e.ExtensionType)
		}
		out = append(out, mls.Extension{Type: mls.ExtensionType(e.ExtensionType), Data: bytes.Clone(e.ExtensionData)})
	}
	return out, nil
}

func (s *server) GroupContextExtensionsProposal(_ context.Context, req *mlsclient.GroupContextExtensionsProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	exts, err := extensions(req.Extensions)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposeGroupContextExtensions(exts))
}

// receive processes proposals sent by others that a commit references;
// this member's own are cached already.
func (st *state) receive(proposals [][]byte) error {
	for _, p := range proposals {
		if st.sent[string(p)] {
			continue
		}
		m, err := parse("proposal", p)
		if err != nil {
			return err
		}
		res, err := st.g.Process(m)
		if err != nil {
			return fail("proposal", err)
		}
		if res.Proposal == nil {
			return status.Error(codes.InvalidArgument, "not a proposal")
		}
	}
	return nil
}

// byValue turns a ProposalDescription into a proposal for the group g.
func byValue(g *mls.Group, cs mls.CipherSuite, groupID []byte, members func(identity []byte) (mls.LeafIndex, error), d *mlsclient.ProposalDescription) (*mls.Proposal, error) {
	switch string(d.ProposalType) {
	case "add":
		kp, err := keyPackage(d.KeyPackage)
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeAdd, Add: &mls.AddProposal{KeyPackage: *kp}}, nil
	case "remove":
		leaf, err := members(d.RemovedId)
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeRemove, Remove: &mls.RemoveProposal{Removed: leaf}}, nil
	case "externalPSK":
		id := externalPSK(d.PskId)
		id.PSKNonce = keyschedule.NewPSKNonce(cs)
		return &mls.Proposal{Type: mls.ProposalTypePreSharedKey, PreSharedKey: &mls.PreSharedKeyProposal{PSK: id}}, nil
	case "resumptionPSK":
		id := resumptionPSK(groupID, d.EpochId)
		id.PSKNonce = keyschedule.NewPSKNonce(cs)
		return &mls.Proposal{Type: mls.ProposalTypePreSharedKey, PreSharedKey: &mls.PreSharedKeyProposal{PSK: id}}, nil
	case "groupContextExtensions":
		exts, err := extensions(d.Extensions)
		if err != nil {
			return nil, err
		}
		return &mls.Proposal{Type: mls.ProposalTypeGroupContextExtensions, GroupContextExtensions: &mls.GroupContextExtensionsProposal{Extensions: exts}}, nil
	case "reinit":
		exts, err := extensions(d.Extensions)
		if err != nil {
			return nil, err
		}
		newCS, err := suite(d.CipherSuite)
		if err != nil {
			return nil, err
		}
		p := mls.NewReInitProposal(mls.ReInitProposal{GroupID: bytes.Clone(d.GroupId), Version: mls.MLS10, CipherSuite: newCS, Extensions: exts})
		return &p, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unknown proposal type %q", d.ProposalType)
}

func (s *server) commit(req *mlsclient.CommitRequest) (*mlsclient.CommitResponse, *state, error) {
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, nil, err
	}
	if err := st.receive(req.ByReference); err != nil {
		return nil, nil, err
	}
	opts := &mls.CommitOptions{ForcePath: req.ForcePath, RatchetTreeOutOfBand: req.ExternalTree}
	for _, d := range req.ByValue {
		p, err := byValue(st.g, st.g.CipherSuite(), st.g.GroupID(), func(id []byte) (mls.LeafIndex, error) { return leafOf(st.g, id) }, d)
		if err != nil {
			return nil, nil, err
		}
		opts.Proposals = append(opts.Proposals, *p)
	}
	pending, err := st.g.Commit(opts)
	if err != nil {
		return nil, nil, fail("commit", err)
	}
	if len(pending.Dropped) > 0 {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "commit: %d proposals dropped, the first because: %v", len(pending.Dropped), pending.Dropped[0].Err)
	}
	resp := &mlsclient.CommitResponse{}
	if resp.Commit, err = encode(pending.Commit); err != nil {
		return nil, nil, err
	}
	if resp.Welcome, err = encode(pending.Welcome); err != nil {
		return nil, nil, err
	}
	if req.ExternalTree {
		// The joiners need the tree of the new epoch: read it from a copy
		// of the state the commit leads to.
		merged, err := st.g.MarshalMergedState(pending.Staged())
		if err != nil {
			return nil, nil, err
		}
		next, err := mls.LoadGroup(merged, st.cfg)
		if err != nil {
			return nil, nil, err
		}
		resp.RatchetTree = next.RatchetTree()
	}
	st.pending = pending
	return resp, st, nil
}

func (s *server) Commit(_ context.Context, req *mlsclient.CommitRequest) (*mlsclient.CommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp, _, err := s.commit(req)
	return resp, err
}

// mergePending merges the member's own commit.
func (st *state) mergePending() error {
	if st.pending == nil {
		return status.Error(codes.FailedPrecondition, "no pending commit")
	}
	err := st.g.MergePendingCommit(st.pending)
	st.pending = nil
	if err != nil {
		return fail("merging the pending commit", err)
	}
	st.sent = map[string]bool{}
	return nil
}

// handle processes and merges a commit from another member.
func (st *state) handle(proposals [][]byte, commit []byte) error {
	if err := st.receive(proposals); err != nil {
		return err
	}
	m, err := parse("commit", commit)
	if err != nil {
		return err
	}
	res, err := st.g.Process(m)
	if err != nil {
		return fail("commit", err)
	}
	if res.Commit == nil {
		return status.Error(codes.InvalidArgument, "not a commit")
	}
	if err := st.g.Merge(res.Commit); err != nil {
		return fail("merge", err)
	}
	st.pending, st.sent = nil, map[string]bool{}
	return nil
}

func (s *server) HandleCommit(_ context.Context, req *mlsclient.HandleCommitRequest) (*mlsclient.HandleCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	if err := st.handle(req.Proposal, req.Commit); err != nil {
		return nil, err
	}
	return &mlsclient.HandleCommitResponse{StateId: req.StateId, EpochAuthenticator: st.g.EpochAuthenticator()}, nil
}

func (s *server) HandlePendingCommit(_ context.Context, req *mlsclient.HandlePendingCommitRequest) (*mlsclient.HandleCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	if err := st.mergePending(); err != nil {
		return nil, err
	}
	return &mlsclient.HandleCommitResponse{StateId: req.StateId, EpochAuthenticator: st.g.EpochAuthenticator()}, nil
}

func (s *server) ReInitProposal(_ context.Context, req *mlsclient.ReInitProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	cs, err := suite(req.CipherSuite)
	if err != nil {
		return nil, err
	}
	exts, err := extensions(req.Extensions)
	if err != nil {
		return nil, err
	}
	return st.proposed(st.g.ProposeReInit(mls.ReInitProposal{GroupID: bytes.Clone(req.GroupId), Version: mls.MLS10, CipherSuite: cs, Extensions: exts}))
}

func (s *server) ReInitCommit(_ context.Context, req *mlsclient.CommitRequest) (*mlsclient.CommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp, _, err := s.commit(req)
	return resp, err
}

// startReInit moves a member whose group was just reinitialized to a
// pending reinit, with a KeyPackage for the new group.
func (s *server) startReInit(st *state) (*mlsclient.HandleReInitCommitResponse, error) {
	r := st.g.PendingReInit()
	if r == nil {
		return nil, status.Error(codes.InvalidArgument, "the commit was not a ReInit")
	}
	var identity []byte
	for _, m := range st.g.Members() {
		if m.Index == st.g.OwnLeafIndex() {
			identity = m.Credential.Identity
		}
	}
	id, kp, err := s.newTransaction(r.CipherSuite, identity, nil)
	if err != nil {
		return nil, err
	}
	delete(s.txs, id)
	data, err := keyPackageBytes(kp)
	if err != nil {
		return nil, err
	}
	psks := pskStore{}
	for k, v := range st.psks {
		psks[k] = v
	}
	cfg := newConfig(psks, st.encrypt)
	rid := s.id()
	s.reinits[rid] = &reinit{old: st.g, st: &state{cfg: cfg, psks: psks, encrypt: st.encrypt}, kp: kp}
	return &mlsclient.HandleReInitCommitResponse{ReinitId: rid, KeyPackage: data, EpochAuthenticator: st.g.EpochAuthenticator()}, nil
}

func (s *server) HandlePendingReInitCommit(_ context.Context, req *mlsclient.HandlePendingCommitRequest) (*mlsclient.HandleReInitCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	if err := st.mergePending(); err != nil {
		return nil, err
	}
	return s.startReInit(st)
}

func (s *server) HandleReInitCommit(_ context.Context, req *mlsclient.HandleCommitRequest) (*mlsclient.HandleReInitCommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	if err := st.handle(req.Proposal, req.Commit); err != nil {
		return nil, err
	}
	return s.startReInit(st)
}

func keyPackages(in [][]byte) ([]*mls.KeyPackage, error) {
	var out []*mls.KeyPackage
	for _, data := range in {
		kp, err := keyPackage(data)
		if err != nil {
			return nil, err
		}
		out = append(out, kp)
	}
	return out, nil
}

// subgroup answers ReInitWelcome and CreateBranch.
func (s *server) subgroup(st *state, g *mls.Group, welcome *mls.MLSMessage, externalTree bool) (*mlsclient.CreateSubgroupResponse, error) {
	st.g = g
	resp := &mlsclient.CreateSubgroupResponse{StateId: s.addState(st), EpochAuthenticator: g.EpochAuthenticator()}
	var err error
	if resp.Welcome, err = encode(welcome); err != nil {
		return nil, err
	}
	if externalTree {
		resp.RatchetTree = g.RatchetTree()
	}
	return resp, nil
}

func (s *server) ReInitWelcome(_ context.Context, req *mlsclient.ReInitWelcomeRequest) (*mlsclient.CreateSubgroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reinits[req.ReinitId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no reinit %d", req.ReinitId)
	}
	kps, err := keyPackages(req.KeyPackage)
	if err != nil {
		return nil, err
	}
	// The new group's first commit always has a path, so force_path needs
	// nothing more.
	cred := r.kp.KeyPackage.LeafNode.Credential
	g, welcome, err := r.old.ReInit(&mls.ReInitOptions{KeyPackages: kps, Credential: &cred, SignatureKey: r.kp.SignatureKey,
		Config: r.st.cfg, RatchetTreeOutOfBand: req.ExternalTree})
	if err != nil {
		return nil, fail("reinit", err)
	}
	delete(s.reinits, req.ReinitId)
	return s.subgroup(r.st, g, welcome, req.ExternalTree)
}

func (s *server) HandleReInitWelcome(_ context.Context, req *mlsclient.HandleReInitWelcomeRequest) (*mlsclient.JoinGroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reinits[req.ReinitId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no reinit %d", req.ReinitId)
	}
	welcome, err := parse("welcome", req.Welcome)
	if err != nil {
		return nil, err
	}
	g, err := mls.Join(welcome, r.kp, &mls.JoinOptions{RatchetTree: req.RatchetTree, PreviousGroup: r.old}, r.st.cfg)
	if err != nil {
		return nil, fail("joining the reinitialized group", err)
	}
	delete(s.reinits, req.ReinitId)
	r.st.g = g
	return &mlsclient.JoinGroupResponse{StateId: s.addState(r.st), EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *server) CreateBranch(_ context.Context, req *mlsclient.CreateBranchRequest) (*mlsclient.CreateSubgroupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	kps, err := keyPackages(req.KeyPackages)
	if err != nil {
		return nil, err
	}
	var exts []mls.Extension
	if req.Extensions != nil {
		if exts, err = extensions(req.Extensions); err != nil {
			return nil, err
		}
	}
	g, welcome, err := st.g.Branch(&mls.BranchOptions{KeyPackages: kps, GroupID: bytes.Clone(req.GroupId), Extensions: exts,
		Config: st.cfg, RatchetTreeOutOfBand: req.ExternalTree})
	if err != nil {
		return nil, fail("branch", err)
	}
	return s.subgroup(&state{cfg: st.cfg, psks: st.psks, encrypt: st.encrypt}, g, welcome, req.ExternalTree)
}

func (s *server) HandleBranch(_ context.Context, req *mlsclient.HandleBranchRequest) (*mlsclient.HandleBranchResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	tx, ok := s.txs[req.TransactionId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no transaction %d", req.TransactionId)
	}
	welcome, err := parse("welcome", req.Welcome)
	if err != nil {
		return nil, err
	}
	g, err := mls.Join(welcome, tx.kp, &mls.JoinOptions{RatchetTree: req.RatchetTree, PreviousGroup: st.g}, st.cfg)
	if err != nil {
		return nil, fail("joining the branch", err)
	}
	delete(s.txs, req.TransactionId)
	id := s.addState(&state{g: g, cfg: st.cfg, psks: st.psks, encrypt: st.encrypt})
	return &mlsclient.HandleBranchResponse{StateId: id, EpochAuthenticator: g.EpochAuthenticator()}, nil
}

func (s *server) NewMemberAddProposal(_ context.Context, req *mlsclient.NewMemberAddProposalRequest) (*mlsclient.NewMemberAddProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gi, err := parse("group info", req.GroupInfo)
	if err != nil {
		return nil, err
	}
	if gi.GroupInfo == nil {
		return nil, status.Error(codes.InvalidArgument, "group_info is not a GroupInfo")
	}
	ctx := gi.GroupInfo.GroupContext
	id, kp, err := s.newTransaction(ctx.CipherSuite, req.Identity, nil)
	if err != nil {
		return nil, err
	}
	m, err := mls.NewMemberProposal(kp, ctx.GroupID, ctx.Epoch, nil)
	if err != nil {
		return nil, fail("new member proposal", err)
	}
	data, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return &mlsclient.NewMemberAddProposalResponse{
		TransactionId: id, Proposal: data,
		InitPriv: kp.InitKey.Bytes(), EncryptionPriv: kp.EncryptionKey.Bytes(), SignaturePriv: kp.SignatureKey.Bytes(),
	}, nil
}

func (s *server) CreateExternalSigner(_ context.Context, req *mlsclient.CreateExternalSignerRequest) (*mlsclient.CreateExternalSignerResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := suite(req.CipherSuite)
	if err != nil {
		return nil, err
	}
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	list, err := mls.MarshalExternalSenders([]mls.ExternalSender{{SignatureKey: sig.PublicKey(), Credential: basic(req.Identity)}})
	if err != nil {
		return nil, err
	}
	// The list is varint-prefixed; the harness wants the one entry.
	entry, ok := dropVarintPrefix(list)
	if !ok {
		return nil, errors.New("malformed external_senders encoding")
	}
	id := s.id()
	s.signers[id] = &mls.ExternalSigner{Key: sig}
	s.signerCS[id] = cs
	return &mlsclient.CreateExternalSignerResponse{SignerId: id, ExternalSender: entry}, nil
}

func (s *server) AddExternalSigner(_ context.Context, req *mlsclient.AddExternalSignerRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.state(req.StateId)
	if err != nil {
		return nil, err
	}
	// The group's extensions with req.ExternalSender appended to its
	// external_senders extension (RFC 9420, Section 12.1.8.1).
	exts := st.g.Extensions()
	out := make([]mls.Extension, 0, len(exts)+1)
	var entries []byte
	for _, e := range exts {
		if e.Type == mls.ExtensionExternalSenders {
			var ok bool
			if entries, ok = dropVarintPrefix(e.Data); !ok {
				return nil, errors.New("malformed external_senders extension")
			}
			continue
		}
		out = append(out, e)
	}
	entries = append(bytes.Clone(entries), req.ExternalSender...)
	out = append(out, mls.Extension{Type: mls.ExtensionExternalSenders, Data: appendVarintPrefixed(nil, entries)})
	return st.proposed(st.g.ProposeGroupContextExtensions(out))
}

func (s *server) ExternalSignerProposal(_ context.Context, req *mlsclient.ExternalSignerProposalRequest) (*mlsclient.ProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	signer, ok := s.signers[req.SignerId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no external signer %d", req.SignerId)
	}
	gm, err := parse("group info", req.GroupInfo)
	if err != nil {
		return nil, err
	}
	if gm.GroupInfo == nil || req.Description == nil {
		return nil, status.Error(codes.InvalidArgument, "group_info is not a GroupInfo or description is missing")
	}
	ctx := gm.GroupInfo.GroupContext
	// Find this signer's position in the group's external_senders.
	index, found := uint32(0), false
	for _, e := range ctx.Extensions {
		if e.Type != mls.ExtensionExternalSenders {
			continue
		}
		keys, ok := externalSenderKeys(e.Data)
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "malformed external_senders extension")
		}
		for i, k := range keys {
			if bytes.Equal(k, signer.Key.PublicKey()) {
				index, found = uint32(i), true
			}
		}
	}
	if !found {
		return nil, status.Error(codes.FailedPrecondition, "the signer is not in the group's external_senders")
	}
	members := func(identity []byte) (mls.LeafIndex, error) {
		return leafInTree(ctx.CipherSuite, req.RatchetTree, gm.GroupInfo, identity)
	}
	p, err := byValue(nil, ctx.CipherSuite, ctx.GroupID, members, req.Description)
	if err != nil {
		return nil, err
	}
	m, err := (&mls.ExternalSigner{Index: index, Key: signer.Key}).Propose(ctx.GroupID, ctx.Epoch, p, nil)
	if err != nil {
		return nil, fail("external proposal", err)
	}
	data, err := m.Bytes()
	if err != nil {
		return nil, err
	}
	return &mlsclient.ProposalResponse{Proposal: data}, nil
}

// dropVarintPrefix returns the body of an MLS variable-length vector
// (RFC 9420, Section 2.1.2) that fills data.
func dropVarintPrefix(data []byte) ([]byte, bool) {
	s := cryptobyte.String(data)
	body, ok := readVarintPrefixed(&s)
	return body, ok && s.Empty()
}

func readVarintPrefixed(s *cryptobyte.String) ([]byte, bool) {
	var first uint8
	if !s.ReadUint8(&first) {
		return nil, false
	}
	n := uint32(first & 0x3f)
	switch first >> 6 {
	case 0:
	case 1:
		var b uint8
		if !s.ReadUint8(&b) {
			return nil, false
		}
		n = n<<8 | uint32(b)
	case 2:
		var b [3]byte
		if !s.CopyBytes(b[:]) {
			return nil, false
		}
		n = n<<24 | uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	default:
		return nil, false
	}
	var body []byte
	if !s.ReadBytes(&body, int(n)) {
		return nil, false
	}
	return body, true
}

func appendVarintPrefixed(b, body []byte) []byte {
	n := len(body)
	switch {
	case n < 1<<6:
		b = append(b, byte(n))
	case n < 1<<14:
		b = append(b, 0x40|byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, body...)
}

// externalSenderKeys lists the signature keys of an external_senders
// extension.
func externalSenderKeys(data []byte) ([][]byte, bool) {
	body, ok := dropVarintPrefix(data)
	if !ok {
		return nil, false
	}
	s := cryptobyte.String(body)
	var keys [][]byte
	for !s.Empty() {
		key, ok := readVarintPrefixed(&s)
		if !ok {
			return nil, false
		}
		var cred mls.Credential
		if !cred.Unmarshal(&s) {
			return nil, false
		}
		keys = append(keys, key)
	}
	return keys, true
}

// leafInTree finds the member holding identity in the ratchet tree given
// beside a GroupInfo, or in its ratchet_tree extension.
func leafInTree(cs mls.CipherSuite, tree []byte, gi *mls.GroupInfo, identity []byte) (mls.LeafIndex, error) {
	if len(tree) == 0 {
		for _, e := range gi.Extensions {
			if e.Type == mls.ExtensionRatchetTree {
				tree = e.Data
			}
		}
	}
	t, err := treekem.ParseTree(cs, tree)
	if err != nil {
		return 0, fail("ratchet tree", err)
	}
	for l, leaf := range t.Leaves() {
		if bytes.Equal(leaf.Credential.Identity, identity) {
			return l, nil
		}
	}
	return 0, status.Errorf(codes.NotFound, "no member %q", identity)
}
