"""The command line and the operator tools: `dev`, `topics`, `policy`, `read`,
`request-link`, `dlq replay`, and the generators of the docs and manifests."""
