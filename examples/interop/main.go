// Command interop is e2ee's client for the MLS working group's interop
// harness (github.com/mlswg/mls-implementations, folder interop/): a gRPC
// server of the harness's MLSClient service, backed by the public API of
// package mls. The harness's test runner connects to it and to the clients
// of other implementations and plays scripted scenarios between them.
//
//	go run ./examples/interop -port 50051
//
// See README.md beside this file for running it against other
// implementations.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"

	"google.golang.org/grpc"

	"github.com/microchat/e2ee/examples/interop/mlsclient"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 50051, "port to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", *host, *port))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("e2ee MLS interop client listening on %s", l.Addr())
	if err := serve(l); err != nil {
		log.Fatal(err)
	}
}

// serve answers the MLSClient service on l until it is closed.
func serve(l net.Listener) error {
	g := grpc.NewServer()
	mlsclient.RegisterMLSClientServer(g, newServer())
	return g.Serve(l)
}
