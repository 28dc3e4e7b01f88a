module github.com/microchat/e2ee/examples

go 1.26.0

require github.com/microchat/e2ee v0.0.0

require (
	github.com/cloudflare/circl v1.6.5 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/microchat/e2ee => ../
