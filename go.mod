module github.com/microchat/e2ee

go 1.26.0

require (
	github.com/cloudflare/circl v1.6.5 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/crypto v0.59.0 // indirect
)
