package main

import (
	"context"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/examples/interop/mlsclient"
)

// TestScenarios plays every scenario of the harness's configs through two
// e2ee servers over loopback gRPC, for every cipher suite the servers
// announce, with handshake messages as PublicMessage and as
// PrivateMessage.
func TestScenarios(t *testing.T) {
	pool, stop, err := startServers(2)
	require.NoError(t, err)
	defer stop()
	ctx := context.Background()
	name, err := pool[0].Name(ctx, &mlsclient.NameRequest{})
	require.NoError(t, err)
	require.Equal(t, "e2ee", name.Name)
	sr, err := pool[0].SupportedCiphersuites(ctx, &mlsclient.SupportedCiphersuitesRequest{})
	require.NoError(t, err)
	require.Len(t, sr.Ciphersuites, 7)

	var configs []string
	for c := range scenarios {
		configs = append(configs, c)
	}
	sort.Strings(configs)
	for _, config := range configs {
		var names []string
		for n := range scenarios[config] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			t.Run(config+"/"+name, func(t *testing.T) {
				for _, cs := range sr.Ciphersuites {
					for _, encrypt := range []bool{false, true} {
						d := &driver{ctx: ctx, pool: pool, suites: sr.Ciphersuites}
						if err := d.play(scenarios[config][name], cs, encrypt); err != nil {
							t.Errorf("suite %d, encrypted handshake %v: %v", cs, encrypt, err)
						}
					}
				}
			})
		}
	}
}

// TestRefusals checks that bad requests get errors rather than answers.
func TestRefusals(t *testing.T) {
	pool, stop, err := startServers(1)
	require.NoError(t, err)
	defer stop()
	ctx := context.Background()
	c := pool[0]
	_, err = c.StateAuth(ctx, &mlsclient.StateAuthRequest{StateId: 99})
	require.Error(t, err)
	_, err = c.CreateGroup(ctx, &mlsclient.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 0x7777, Identity: []byte("a")})
	require.Error(t, err)
	g, err := c.CreateGroup(ctx, &mlsclient.CreateGroupRequest{GroupId: []byte("g"), CipherSuite: 1, Identity: []byte("a")})
	require.NoError(t, err)
	_, err = c.HandleCommit(ctx, &mlsclient.HandleCommitRequest{StateId: g.StateId, Commit: []byte{0, 1, 0, 1}})
	require.Error(t, err)
	_, err = c.HandlePendingCommit(ctx, &mlsclient.HandlePendingCommitRequest{StateId: g.StateId})
	require.Error(t, err, "no pending commit")
	_, err = c.RemoveProposal(ctx, &mlsclient.RemoveProposalRequest{StateId: g.StateId, RemovedId: []byte("nobody")})
	require.Error(t, err)
	_, err = c.Commit(ctx, &mlsclient.CommitRequest{StateId: g.StateId, ByValue: []*mlsclient.ProposalDescription{{ProposalType: []byte("frobnicate")}}})
	require.Error(t, err)

	// A driver that expects the wrong epoch authenticator notices.
	d := &driver{ctx: ctx, pool: pool, suites: []uint32{1}}
	require.NoError(t, d.play([]step{create("alice"), newKeyPackage("bob")}, 1, false))
	kp, err := d.get(1, "key_package")
	require.NoError(t, err)
	cr, err := c.Commit(ctx, &mlsclient.CommitRequest{StateId: d.stateID["alice"],
		ByValue: []*mlsclient.ProposalDescription{{ProposalType: []byte("add"), KeyPackage: kp}}})
	require.NoError(t, err)
	_, err = c.HandlePendingCommit(ctx, &mlsclient.HandlePendingCommitRequest{StateId: d.stateID["alice"]})
	require.NoError(t, err)
	require.ErrorIs(t, d.join("bob", cr.Welcome, nil, []byte("not the epoch authenticator")), errDisagree)
}
