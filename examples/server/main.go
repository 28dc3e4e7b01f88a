// Command server is MicroChat's delivery service over HTTP: the server side
// of [mls.Transport]. It stores published KeyPackages and GroupInfos,
// queues Welcomes for their recipients, keeps each group's message log and
// accepts exactly one commit per epoch (RFC 9420, §14). It only ever sees
// MLS messages as bytes: application messages and, with the clients'
// default settings, handshakes are PrivateMessages it cannot read.
//
// Run it, then start clients (see examples/client):
//
//	go run ./examples/server -addr 127.0.0.1:8080 -db server.db
//	go run ./examples/server -postgres "host=/tmp dbname=microchat sslmode=disable"
//
// The HTTP interface, all bodies binary MLS encodings unless noted:
//
//	POST /v1/keypackages                   an MLSMessage holding a KeyPackage
//	GET  /v1/keypackages/{identity}        one KeyPackage of identity (handed out once, except last resort)
//	POST /v1/welcomes                      an MLSMessage holding a Welcome
//	GET  /v1/welcomes/{identity}           JSON list of the Welcomes queued for identity (taken)
//	POST /v1/groups/{group}/messages       an MLSMessage holding a PublicMessage (an external commit); JSON
//	                                       {seq}; 409 if a commit of its epoch was accepted already; the same
//	                                       bytes again get the same seq (idempotent). A PrivateMessage is
//	                                       refused (401): it must come sealed, see below
//	POST /v1/groups/{group}/envelopes      a sealed envelope holding a PrivateMessage (package sealedsender);
//	                                       answered as messages; 401 with a PrivateToken challenge if its token
//	                                       is missing, invalid or spent on another message
//	GET  /.well-known/private-token-issuer-directory   the Privacy Pass issuer directory (RFC 9578)
//	POST /v1/token-request                 an RFC 9578 TokenRequest; the TokenResponse (MicroChat-Account header)
//	GET  /v1/groups/{group}/messages?after=N   JSON list {seq, data} of the log after N
//	GET  /v1/groups/{group}/commits/{epoch}    JSON {seq, data}: the commit accepted for epoch, or 404
//	PUT  /v1/groups/{group}/groupinfo      an MLSMessage holding a GroupInfo
//	GET  /v1/groups/{group}/groupinfo      the latest GroupInfo
//
// {identity} and {group} are hex. Group PrivateMessages (application
// messages and, with the clients' settings, every handshake) travel in
// sealed envelopes with no sender identity, paid for with Privacy Pass
// tokens the server issues blindly (sealed.go). This example has no
// accounts: a real deployment authenticates clients for publishing,
// fetching and token issuance, never for envelopes.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/microchat/e2ee/mls"
)

// maxBody bounds every request body: large enough for a GroupInfo with the
// ratchet tree of a big group, small enough not to be a memory weapon.
const maxBody = 64 << 20

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	dbPath := flag.String("db", "microchat-server.db", "SQLite database file")
	pg := flag.String("postgres", "", "PostgreSQL connection string (instead of SQLite)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *dbPath, *pg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run serves until ctx is done. It prints "listening on ADDR" once the
// listener is up, so that scripts and tests can wait for it.
func run(ctx context.Context, addr, dbPath, pg string, out io.Writer) error {
	d, err := openDB(ctx, dbPath, pg)
	if err != nil {
		return err
	}
	defer d.sql.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	tk, err := newTokens(ctx, d, time.Now)
	if err != nil {
		return err
	}
	go tk.pruneLoop(ctx, out)
	srv := &http.Server{Handler: newHandler(d, tk), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "listening on %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type handler struct {
	db     *db
	tokens *tokens
	mux    *http.ServeMux
}

func newHandler(d *db, tk *tokens) http.Handler {
	h := &handler{db: d, tokens: tk, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /.well-known/private-token-issuer-directory", h.getIssuerDirectory)
	h.mux.HandleFunc("POST "+tokenRequestPath, h.postTokenRequest)
	h.mux.HandleFunc("POST /v1/groups/{group}/envelopes", h.postEnvelope)
	h.mux.HandleFunc("POST /v1/keypackages", h.postKeyPackage)
	h.mux.HandleFunc("GET /v1/keypackages/{identity}", h.getKeyPackage)
	h.mux.HandleFunc("POST /v1/welcomes", h.postWelcome)
	h.mux.HandleFunc("GET /v1/welcomes/{identity}", h.getWelcomes)
	h.mux.HandleFunc("POST /v1/groups/{group}/messages", h.postMessage)
	h.mux.HandleFunc("GET /v1/groups/{group}/messages", h.getMessages)
	h.mux.HandleFunc("GET /v1/groups/{group}/commits/{epoch}", h.getCommit)
	h.mux.HandleFunc("PUT /v1/groups/{group}/groupinfo", h.putGroupInfo)
	h.mux.HandleFunc("GET /v1/groups/{group}/groupinfo", h.getGroupInfo)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	h.mux.ServeHTTP(w, r)
}

// fail answers with the status that matches err.
func fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errStaleCommit):
		status = http.StatusConflict
	case errors.Is(err, mls.ErrMalformed), errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	}
	http.Error(w, err.Error(), status)
}

var errBadRequest = errors.New("server: bad request")

// readMessage reads and parses the MLSMessage in the request body.
func readMessage(r *http.Request, wf mls.WireFormat) (*mls.MLSMessage, []byte, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	m, err := mls.ParseMessage(data)
	if err != nil {
		return nil, nil, err
	}
	if wf != 0 && m.WireFormat != wf {
		return nil, nil, fmt.Errorf("%w: wire format %d, want %d", errBadRequest, m.WireFormat, wf)
	}
	return m, data, nil
}

func hexParam(r *http.Request, name string) ([]byte, error) {
	v, err := hex.DecodeString(r.PathValue(name))
	if err != nil || len(v) == 0 || len(v) > 255 {
		return nil, fmt.Errorf("%w: %s must be non-empty hex", errBadRequest, name)
	}
	return v, nil
}

func (h *handler) postKeyPackage(w http.ResponseWriter, r *http.Request) {
	m, data, err := readMessage(r, mls.WireFormatKeyPackage)
	if err != nil {
		fail(w, err)
		return
	}
	// The KeyPackage's signature is checked by whoever adds its owner; the
	// server files it under the identity in its credential. A real
	// deployment checks that the identity is the authenticated account's.
	ref, err := m.KeyPackage.Ref()
	if err != nil {
		fail(w, err)
		return
	}
	identity := m.KeyPackage.LeafNode.Credential.Identity
	if len(identity) == 0 {
		fail(w, fmt.Errorf("%w: KeyPackage has no identity", errBadRequest))
		return
	}
	if err := h.db.putKeyPackage(r.Context(), identity, ref[:], m.KeyPackage.IsLastResort(), data); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) getKeyPackage(w http.ResponseWriter, r *http.Request) {
	identity, err := hexParam(r, "identity")
	if err != nil {
		fail(w, err)
		return
	}
	data, err := h.db.takeKeyPackage(r.Context(), identity)
	if err != nil {
		fail(w, err)
		return
	}
	w.Write(data)
}

func (h *handler) postWelcome(w http.ResponseWriter, r *http.Request) {
	m, data, err := readMessage(r, mls.WireFormatWelcome)
	if err != nil {
		fail(w, err)
		return
	}
	refs := make([][]byte, len(m.Welcome.Secrets))
	for i, s := range m.Welcome.Secrets {
		refs[i] = s.NewMember[:]
	}
	if err := h.db.putWelcome(r.Context(), refs, data); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) getWelcomes(w http.ResponseWriter, r *http.Request) {
	identity, err := hexParam(r, "identity")
	if err != nil {
		fail(w, err)
		return
	}
	ws, err := h.db.takeWelcomes(r.Context(), identity)
	if err != nil {
		fail(w, err)
		return
	}
	if ws == nil {
		ws = [][]byte{}
	}
	writeJSON(w, ws)
}

func (h *handler) postMessage(w http.ResponseWriter, r *http.Request) {
	groupID, err := hexParam(r, "group")
	if err != nil {
		fail(w, err)
		return
	}
	m, data, err := readMessage(r, 0)
	if err != nil {
		fail(w, err)
		return
	}
	var commit bool
	switch {
	case m.PublicMessage != nil:
		commit = m.PublicMessage.Content.ContentType == mls.ContentTypeCommit
	case m.PrivateMessage != nil:
		// PrivateMessages travel sealed and paid for (postEnvelope).
		h.challenge(w, groupID, errNoToken)
		return
	default:
		fail(w, fmt.Errorf("%w: not a group message", errBadRequest))
		return
	}
	if string(m.GroupID()) != string(groupID) {
		fail(w, fmt.Errorf("%w: message is for another group", errBadRequest))
		return
	}
	seq, err := h.db.appendMessage(r.Context(), groupID, m.Epoch(), commit, data)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, map[string]int64{"seq": seq})
}

func (h *handler) getMessages(w http.ResponseWriter, r *http.Request) {
	groupID, err := hexParam(r, "group")
	if err != nil {
		fail(w, err)
		return
	}
	after, err := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	if err != nil && r.URL.Query().Get("after") != "" {
		fail(w, fmt.Errorf("%w: after must be a number", errBadRequest))
		return
	}
	msgs, err := h.db.messages(r.Context(), groupID, after, 500)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, msgs)
}

// getCommit answers which commit, if any, the server accepted for an
// epoch: what a client that crashed while committing needs to know
// (mls.Group.RecoveredCommit).
func (h *handler) getCommit(w http.ResponseWriter, r *http.Request) {
	groupID, err := hexParam(r, "group")
	if err != nil {
		fail(w, err)
		return
	}
	epoch, err := strconv.ParseUint(r.PathValue("epoch"), 10, 64)
	if err != nil {
		fail(w, fmt.Errorf("%w: epoch must be a number", errBadRequest))
		return
	}
	e, err := h.db.acceptedCommit(r.Context(), groupID, epoch)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, e)
}

func (h *handler) putGroupInfo(w http.ResponseWriter, r *http.Request) {
	groupID, err := hexParam(r, "group")
	if err != nil {
		fail(w, err)
		return
	}
	m, data, err := readMessage(r, mls.WireFormatGroupInfo)
	if err != nil {
		fail(w, err)
		return
	}
	if string(m.GroupInfo.GroupContext.GroupID) != string(groupID) {
		fail(w, fmt.Errorf("%w: GroupInfo is for another group", errBadRequest))
		return
	}
	if err := h.db.putGroupInfo(r.Context(), groupID, data); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) getGroupInfo(w http.ResponseWriter, r *http.Request) {
	groupID, err := hexParam(r, "group")
	if err != nil {
		fail(w, err)
		return
	}
	data, err := h.db.groupInfo(r.Context(), groupID)
	if err != nil {
		fail(w, err)
		return
	}
	w.Write(data)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
