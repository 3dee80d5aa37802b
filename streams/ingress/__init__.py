"""The HTTP shell: verify, validate, key and publish eduMe webhooks. Imports no Faust."""
