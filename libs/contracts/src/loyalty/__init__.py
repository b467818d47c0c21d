"""Generated contracts of the loyalty platform. Everything below this package is produced by
`make protos` from `protos/`; only this file is kept in git."""
